"""What tests build: synthetic images and COCO sets on disk, the tiny pre-training checkpoint, shipped configs, tool
modules. ``tests/conftest.py`` wraps the expensive ones as session fixtures."""
import glob
import importlib.util
import json
import os.path as osp
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

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


# ----------------------------------------------------------------------------------------------------- images
def blocky_texture(rng, h, w):
    """Random 8 x 8-pixel blocks (JPEG-friendly), floats in [0, 1) of shape (h, w, 3)."""
    base = rng.random((-(-h // 8), -(-w // 8), 3))
    return np.kron(base, np.ones((8, 8, 1)))[:h, :w]


def save_image(path, img):
    """Write an (h, w, 3) uint8 array, creating its folder; JPEG at quality 90, other formats lossless."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, quality=90)


def write_images(folder, n=8, seed=0):
    """n random-texture RGB JPEGs of varied size (the pre-training pipeline needs nothing else)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        h, w = 80 + 8 * (i % 4), 96 + 8 * (i % 3)
        save_image(Path(folder) / f'img_{i}.jpg', (blocky_texture(rng, h, w) * 255).astype(np.uint8))
    return str(folder)


# ------------------------------------------------------------------------------------------------------- COCO
def box_polygon(x0, y0, x1, y1):
    """The flat COCO polygon of an axis-aligned box."""
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def coco_instance(polygon, category_id):
    """A COCO instance annotation of one flat polygon; bbox and area are its bounding box's."""
    xs, ys = polygon[0::2], polygon[1::2]
    x0, y0 = min(xs), min(ys)
    w, h = max(xs) - x0, max(ys) - y0
    return dict(category_id=category_id, segmentation=[polygon], iscrowd=0, bbox=[x0, y0, w, h], area=float(w * h))


def write_coco_split(root, split, drawn, categories, ext='jpg'):
    """One split of a COCO instance set: ``drawn`` holds per image (uint8 array, [:func:`coco_instance`, ...]);
    writes root/<split>/<split>_<i>.<ext> and root/annotations/instances_<split>.json listing ``categories``
    ((id, name) pairs). Returns the annotation file's path."""
    root = Path(root)
    images, anns = [], []
    for i, (img, instances) in enumerate(drawn):
        name = f'{split}_{i}.{ext}'
        save_image(root / split / name, img)
        images.append(dict(id=i + 1, file_name=name, width=img.shape[1], height=img.shape[0]))
        anns += [dict(inst, id=len(anns) + k + 1, image_id=i + 1) for k, inst in enumerate(instances)]
    ann_file = root / 'annotations' / f'instances_{split}.json'
    ann_file.parent.mkdir(parents=True, exist_ok=True)
    ann_file.write_text(json.dumps(dict(images=images, annotations=anns, categories=[
        dict(id=cid, name=name, supercategory='thing') for cid, name in categories])))
    return str(ann_file)


SHAPES = ('ellipse', 'rectangle', 'triangle')
SHAPE_CATEGORIES = tuple((i + 1, name) for i, name in enumerate(SHAPES))
SHAPE_CLASSES = SHAPES  # the class names of a set written with the default categories


def shape_polygon(kind, cx, cy, r):
    """A flat COCO polygon of a rectangle, triangle or ellipse of radius r around (cx, cy)."""
    if kind == 'rectangle':
        return box_polygon(cx - r, cy - r, cx + r, cy + r)
    if kind == 'triangle':
        return [cx, cy - r, cx + r, cy + r, cx - r, cy + r]
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    return [float(v) for a in angles for v in (cx + r * np.cos(a), cy + r * 0.7 * np.sin(a))]


def write_coco(root, n_train=4, n_val=2, size=128, seed=0, categories=SHAPE_CATEGORIES, listed=None,
               splits=('train', 'val')):
    """A COCO instance set of shapes with exact polygons on noise (:func:`write_coco_split` layout, the split
    names ``splits``): 2 shapes per image, the second mirroring the first through the centre; category number j
    of ``categories`` is drawn as ``SHAPES[j % 3]``. The files list ``listed`` (default ``categories``).
    Returns root as str."""
    rng = np.random.default_rng(seed)
    for split, n in zip(splits, (n_train, n_val)):
        drawn = []
        for _ in range(n):
            img = Image.fromarray((rng.random((size, size, 3)) * 60 + 30).astype(np.uint8))
            draw = ImageDraw.Draw(img)
            instances = []
            for k in range(2):
                cat = int(rng.integers(0, len(categories)))
                r = int(rng.integers(14, 24))
                if k == 0:
                    cx, cy = (int(v) for v in rng.integers(r + 2, size - r - 2, size=2))
                else:
                    cx, cy = size - 1 - cx, size - 1 - cy
                poly = shape_polygon(SHAPES[cat % 3], cx, cy, r)
                draw.polygon(poly, fill=tuple(int(v) for v in rng.integers(150, 255, 3)))
                instances.append(coco_instance(poly, categories[cat][0]))
            drawn.append((np.asarray(img), instances))
        write_coco_split(root, split, drawn, listed or categories)
    return str(root)


# ------------------------------------------------------------------------------------------------ checkpoints
def build_model(model_cfg, scope='mmpretrain', seed=0):
    """The model of ``model_cfg`` from ``scope``'s registry (whatever scope is current), seeded, initialised."""
    from mmengine.registry import DefaultScope
    if scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmpretrain.registry import MODELS

    import projects.posfield  # noqa: F401
    import projects.simclr_loc  # noqa: F401
    torch.manual_seed(seed)
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(model_cfg)
    model.init_weights()
    return model


def save_checkpoint(path, state_dict, **meta):
    """A checkpoint as the runner saves one: ``{'state_dict': ..., 'meta': meta}``; returns path as str."""
    torch.save(dict(state_dict=state_dict, meta=meta), path)
    return str(path)


def write_tiny_checkpoint(path, **meta):
    """A PosFieldSSL checkpoint of :data:`TINY_PRETRAIN` (``meta.cfg`` its text, as tools/train.py writes it) whose
    EMA teacher differs from its student, so that loading the wrong network shows. Returns the model."""
    from mmengine.config import Config
    cfg = Config.fromfile(TINY_PRETRAIN)
    model = build_model(cfg.model)
    with torch.no_grad():
        for p in model.teacher.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_checkpoint(path, model.state_dict(), cfg=cfg.pretty_text, **meta)
    return model
