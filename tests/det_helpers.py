"""A small COCO-format instance-segmentation set written by tests (shapes with exact polygons)."""
import json

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ('ellipse', 'rectangle', 'triangle')


def shape_polygon(kind: str, cx: float, cy: float, r: float) -> list:
    """A flat COCO polygon of a rectangle, triangle or ellipse of radius r around (cx, cy)."""
    if kind == 'rectangle':
        return [cx - r, cy - r, cx + r, cy - r, cx + r, cy + r, cx - r, cy + r]
    if kind == 'triangle':
        return [cx, cy - r, cx + r, cy + r, cx - r, cy + r]
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    return [float(v) for a in angles for v in (cx + r * np.cos(a), cy + r * 0.7 * np.sin(a))]


def write_coco(root, n_train=4, n_val=2, size=128, seed=0):
    """root/{train,val}/*.jpg + root/annotations/instances_{train,val}.json; returns root as str."""
    rng = np.random.default_rng(seed)
    (root / 'annotations').mkdir(parents=True, exist_ok=True)
    ann_id = 1
    for split, n in (('train', n_train), ('val', n_val)):
        (root / split).mkdir(exist_ok=True)
        images, anns = [], []
        for i in range(n):
            img = Image.fromarray((rng.random((size, size, 3)) * 60 + 30).astype(np.uint8))
            draw = ImageDraw.Draw(img)
            for k in range(2):
                cat = int(rng.integers(0, len(CLASSES)))
                r = int(rng.integers(14, 24))
                if k == 0:
                    cx, cy = (int(v) for v in rng.integers(r + 2, size - r - 2, size=2))
                else:  # the second shape mirrors the first through the image centre
                    cx, cy = size - 1 - cx, size - 1 - cy
                poly = shape_polygon(CLASSES[cat], cx, cy, r)
                draw.polygon(poly, fill=tuple(int(v) for v in rng.integers(150, 255, 3)))
                xs, ys = poly[0::2], poly[1::2]
                x0, y0 = min(xs), min(ys)
                anns.append(dict(id=ann_id, image_id=i + 1, category_id=cat + 1, segmentation=[poly], iscrowd=0,
                                 bbox=[x0, y0, max(xs) - x0, max(ys) - y0],
                                 area=float((max(xs) - x0) * (max(ys) - y0))))
                ann_id += 1
            name = f'{split}_{i}.jpg'
            img.save(root / split / name)
            images.append(dict(id=i + 1, file_name=name, width=size, height=size))
        cats = [dict(id=j + 1, name=c) for j, c in enumerate(CLASSES)]
        (root / 'annotations' / f'instances_{split}.json').write_text(
            json.dumps(dict(images=images, annotations=anns, categories=cats)))
    return str(root)


# Every place a detection config states its input scale (the fixed frame and the pipelines that produce it).
INPUT_SCALE_KEYS = (
    'model.data_preprocessor.batch_augments[BatchFixedSizePad].size',
    'model.backbone.img_size',
    'train_pipeline[RandomResize].scale', 'train_pipeline[RandomCrop].crop_size',
    'test_pipeline[Resize].scale', 'test_pipeline[Pad].size',
)


def set_input_scale(cfg, size):
    """Set a detection config's input scale to ``size`` x ``size`` everywhere it is stated
    (:data:`INPUT_SCALE_KEYS`, in the train/val/test dataloaders' pipelines too); returns ``cfg``."""
    frame = (size, size)
    for aug in cfg.model.data_preprocessor.get('batch_augments') or []:
        if aug['type'] == 'BatchFixedSizePad':
            aug['size'] = frame
    cfg.model.backbone.img_size = size
    pipelines = [cfg.get('train_pipeline'), cfg.get('test_pipeline')]
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(loader) is not None:
            pipelines.append(cfg[loader].dataset.get('pipeline'))
    for pipeline in pipelines:
        for t in pipeline or []:
            if t['type'] in ('RandomResize', 'Resize'):
                t['scale'] = frame
            elif t['type'] == 'RandomCrop':
                t['crop_size'] = frame
            elif t['type'] in ('Pad', 'PadToFrame') and 'size' in t:
                t['size'] = frame
    return cfg
