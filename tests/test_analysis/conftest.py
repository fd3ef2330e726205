"""A plain ViT checkpoint and data sets for the analysis tests (the tiny pre-training checkpoint is
``tiny_ssl_ckpt`` of tests/conftest.py)."""
import numpy as np
import pytest
import torch

from tests.helpers import box_polygon, coco_instance, save_image, write_coco_split, write_images

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
    """Three RGB images of different sizes."""
    return write_images(tmp_path_factory.mktemp('imgs'), n=3)


@pytest.fixture(scope='session')
def coco_set(tmp_path_factory):
    """A COCO-format set: 3 images with two rectangular instances each (polygons)."""
    rng = np.random.default_rng(1)
    drawn = []
    for _ in range(3):
        a = (rng.random((64, 80, 3)) * 60).astype(np.uint8)
        instances = []
        for (x0, y0, x1, y1), col in zip([(8, 8, 40, 40), (44, 20, 76, 60)], [(255, 0, 0), (0, 255, 0)]):
            a[y0:y1, x0:x1] = col
            instances.append(coco_instance(box_polygon(x0, y0, x1, y1), 1))
        drawn.append((a, instances))
    root = tmp_path_factory.mktemp('coco')
    ann_file = write_coco_split(root, 'val', drawn, [(1, 'thing')], ext='png')
    return dict(ann_file=ann_file, img_dir=str(root / 'val'))


@pytest.fixture(scope='session')
def labelled_dir(tmp_path_factory):
    """train/ and val/ with two colour classes (class sub-folders, as mmpretrain's CustomDataset reads)."""
    root = tmp_path_factory.mktemp('labelled')
    rng = np.random.default_rng(2)
    for split, n in (('train', 6), ('val', 3)):
        for name, col in (('red', (200, 30, 30)), ('blue', (30, 30, 200))):
            folder = root / split / name
            for i in range(n):
                a = np.clip(np.array(col)[None, None] + rng.normal(0, 20, (40, 48, 3)), 0, 255).astype(np.uint8)
                save_image(folder / f'{i}.jpg', a)
    return str(root)


def _load_tool(name):
    from tests.helpers import load_tool
    return load_tool(f'tools/analysis/{name}.py')


@pytest.fixture(scope='session')
def load_tool():
    """``load_tool('attention_maps')`` -> the module of tools/analysis/attention_maps.py."""
    return _load_tool
