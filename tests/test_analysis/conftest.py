"""Tiny checkpoints and data sets for the analysis tests (all made on the fly, CPU, seconds)."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import TINY_PRETRAIN

PLAIN_VIT_CONFIG = """
model = dict(
    type='ImageClassifier',
    data_preprocessor=dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True),
    backbone=dict(type='VisionTransformer', arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                  feedforward_channels=64), img_size=32, patch_size=8),
    neck=None,
    head=dict(type='LinearClsHead', num_classes=2, in_channels=32))
"""


@pytest.fixture(scope='session')
def tiny_ssl_ckpt(tmp_path_factory):
    """A PosFieldSSL checkpoint of the tiny smoke config whose teacher differs from its student."""
    from mmengine.config import Config
    from mmpretrain.registry import MODELS

    import projects.posfield  # noqa: F401
    cfg = Config.fromfile(TINY_PRETRAIN)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    with torch.no_grad():
        for p in model.teacher.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = tmp_path_factory.mktemp('ckpt') / 'tiny_posfield.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {'iter': 0}}, path)
    return dict(config=TINY_PRETRAIN, checkpoint=str(path), state=model.state_dict())


@pytest.fixture(scope='session')
def plain_vit(tmp_path_factory):
    """A plain mmpretrain VisionTransformer classifier config and checkpoint (``backbone.*`` keys)."""
    from mmengine.config import Config
    from mmpretrain.registry import MODELS
    d = tmp_path_factory.mktemp('plain')
    cfg_path = d / 'plain_vit.py'
    cfg_path.write_text(PLAIN_VIT_CONFIG)
    torch.manual_seed(1)
    model = MODELS.build(Config.fromfile(str(cfg_path)).model)
    model.init_weights()
    with torch.no_grad():  # a non-trivial position embedding
        model.backbone.pos_embed.normal_(std=0.5)
    ckpt = d / 'plain_vit.pth'
    torch.save({'state_dict': model.state_dict()}, ckpt)
    return dict(config=str(cfg_path), checkpoint=str(ckpt))


@pytest.fixture(scope='session')
def image_dir(tmp_path_factory):
    """Three RGB images of different sizes with a bright square on noise."""
    d = tmp_path_factory.mktemp('imgs')
    rng = np.random.default_rng(0)
    for i in range(3):
        a = (rng.random((60 + 8 * i, 80, 3)) * 255).astype(np.uint8)
        a[15:45, 20:50] = (255, 40, 40)
        Image.fromarray(a).save(d / f'img_{i}.png')
    return str(d)


@pytest.fixture(scope='session')
def coco_set(tmp_path_factory):
    """A COCO-format set: 3 images with two rectangular instances each (polygons) and one crowd region."""
    d = tmp_path_factory.mktemp('coco')
    (d / 'img').mkdir()
    rng = np.random.default_rng(1)
    images, anns = [], []
    for i in range(3):
        h, w = 64, 80
        a = (rng.random((h, w, 3)) * 60).astype(np.uint8)
        for j, ((x0, y0, x1, y1), col) in enumerate(zip([(8, 8, 40, 40), (44, 20, 76, 60)],
                                                        [(255, 0, 0), (0, 255, 0)])):
            a[y0:y1, x0:x1] = col
            anns.append(dict(id=len(anns) + 1, image_id=i + 1, category_id=1, iscrowd=0,
                             area=(x1 - x0) * (y1 - y0), bbox=[x0, y0, x1 - x0, y1 - y0],
                             segmentation=[[x0, y0, x1, y0, x1, y1, x0, y1]]))
        Image.fromarray(a).save(d / 'img' / f'{i}.png')
        images.append(dict(id=i + 1, file_name=f'{i}.png', height=h, width=w))
    ann = d / 'ann.json'
    ann.write_text(json.dumps(dict(images=images, annotations=anns, categories=[dict(id=1, name='thing')])))
    return dict(ann_file=str(ann), img_dir=str(d / 'img'))


@pytest.fixture(scope='session')
def labelled_dir(tmp_path_factory):
    """train/ and val/ with two colour classes (class sub-folders, as mmpretrain's CustomDataset reads)."""
    root = tmp_path_factory.mktemp('labelled')
    rng = np.random.default_rng(2)
    for split, n in (('train', 6), ('val', 3)):
        for name, col in (('red', (200, 30, 30)), ('blue', (30, 30, 200))):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                a = np.clip(np.array(col)[None, None] + rng.normal(0, 20, (40, 48, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(a).save(folder / f'{i}.jpg')
    return str(root)


def _load_tool(name):
    from tests.helpers import load_tool
    return load_tool(f'tools/analysis/{name}.py')


@pytest.fixture(scope='session')
def load_tool():
    """``load_tool('attention_maps')`` -> the module of tools/analysis/attention_maps.py."""
    return _load_tool
