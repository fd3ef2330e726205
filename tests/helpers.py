"""Small builders shared by tests (images on disk, configs)."""
import os.path as osp

import numpy as np
from PIL import Image

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY_PRETRAIN = osp.join(ROOT, 'configs/posfield/posfield_vit-tiny-p8_1xb4-6iter_cpu-smoke.py')


def write_images(folder, n=8, seed=0):
    """n random-texture RGB JPEGs of varied size (the pre-training pipeline needs nothing else)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        h, w = 80 + 8 * (i % 4), 96 + 8 * (i % 3)
        base = rng.random((h // 8, w // 8, 3))
        img = np.kron(base, np.ones((8, 8, 1)))[:h, :w]  # blocky texture, compresses well
        Image.fromarray((img * 255).astype(np.uint8)).save(folder / f'img_{i}.jpg', quality=90)
    return str(folder)
