"""Small builders shared by tests (images on disk, configs, tool modules)."""
import glob
import importlib.util
import os.path as osp

import numpy as np
from PIL import Image

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY_PRETRAIN = osp.join(ROOT, 'configs/posfield/posfield_vit-tiny-p8_1xb4-6iter_cpu-smoke.py')
# every config a user can launch (absolute paths): configs/ without its _base_ fragments
SHIPPED_CONFIGS = sorted(p for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
                         if '_base_' not in p.split(osp.sep))


def load_tool(relpath):
    """A script of this repository (e.g. ``tools/run_localization_job.py``) imported as a module; tools/ is not a
    package."""
    name = 'tool_' + osp.splitext(relpath)[0].replace('/', '_')
    spec = importlib.util.spec_from_file_location(name, osp.join(ROOT, relpath))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
