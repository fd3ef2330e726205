"""A COCO-format instance set as per-patch semantic labels and instance crops, for frozen-feature probes.

Layout (the one mmdet's ``CocoDataset`` configs of this repository use, and ``tools/run_default_job.py --coco``):
``DIR/annotations/instances_{train,val}.json`` with images under ``DIR/{train,val}/`` (or ``DIR/`` itself).

Semantic map of an image: 0 = background, ``1..C`` = category (in category-id order); instances are painted
largest first, so a smaller object on top of a larger one keeps its pixels; crowd regions are ``IGNORE``.
Per-patch label: the majority class of the patch's pixels, ignored pixels left out (a patch with only ignored
pixels is ignored).
"""
import json
import os.path as osp
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
from PIL import Image

IGNORE = 255


class CocoProbeDataError(ValueError):
    """The COCO folder does not have the expected layout or content (the message names the file)."""


@dataclass
class ProbeImage:
    path: str
    width: int
    height: int
    anns: List[dict]


@dataclass
class CocoSplit:
    root: str
    split: str
    ann_file: str
    classes: List[str]  # in category-id order; label k + 1 is classes[k]
    images: List[ProbeImage]
    cat_to_label: Dict[int, int]


def ann_file_of(root: str, split: str) -> str:
    return osp.join(root, 'annotations', f'instances_{split}.json')


def load_split(root: str, split: str, max_images: Optional[int] = None) -> CocoSplit:
    """Read ``root``'s ``split`` (``'train'`` / ``'val'``); raises :class:`CocoProbeDataError` naming what is wrong."""
    ann_file = ann_file_of(root, split)
    if not osp.isfile(ann_file):
        raise CocoProbeDataError(f'--coco {root}: missing {ann_file} (expected annotations/instances_{{train,val}}'
                                 f'.json with images under {split}/)')
    with open(ann_file) as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as exc:
            raise CocoProbeDataError(f'{ann_file}: not valid JSON ({exc})') from exc
    for key in ('images', 'annotations', 'categories'):
        if not isinstance(data.get(key), list):
            raise CocoProbeDataError(f'{ann_file}: expected a list under "{key}"')
    if not data['categories']:
        raise CocoProbeDataError(f'{ann_file}: no categories')
    cats = sorted(data['categories'], key=lambda c: c['id'])
    cat_to_label = {c['id']: i + 1 for i, c in enumerate(cats)}
    by_image: Dict[int, List[dict]] = {}
    for a in data['annotations']:
        if a.get('category_id') not in cat_to_label:
            raise CocoProbeDataError(f'{ann_file}: annotation {a.get("id")} has category_id {a.get("category_id")} '
                                     f'not in categories {sorted(cat_to_label)}')
        by_image.setdefault(a['image_id'], []).append(a)
    images = []
    for im in sorted(data['images'], key=lambda i: i['id']):
        path = _find_image(root, split, im['file_name'], ann_file)
        images.append(ProbeImage(path, int(im['width']), int(im['height']), by_image.get(im['id'], [])))
        if max_images and len(images) >= max_images:
            break
    if not images:
        raise CocoProbeDataError(f'{ann_file}: no images')
    return CocoSplit(root, split, ann_file, [c['name'] for c in cats], images, cat_to_label)


def _find_image(root: str, split: str, file_name: str, ann_file: str) -> str:
    for candidate in (osp.join(root, split, file_name), osp.join(root, file_name)):
        if osp.isfile(candidate):
            return candidate
    raise CocoProbeDataError(f'{ann_file}: image {file_name!r} is neither in {osp.join(root, split)} nor in {root}')


def semantic_map(img: ProbeImage, cat_to_label: Dict[int, int]) -> np.ndarray:
    """``(H, W)`` uint8 label map of one image (see the module docstring)."""
    from pycocotools import mask as mask_utils
    out = np.zeros((img.height, img.width), np.uint8)
    for a in sorted(img.anns, key=lambda a: -float(a.get('area', 0.0))):
        seg = a.get('segmentation')
        if not seg:
            continue
        if isinstance(seg, list):
            rles = mask_utils.frPyObjects(seg, img.height, img.width)
            rle = mask_utils.merge(rles)
        elif isinstance(seg.get('counts'), list):
            rle = mask_utils.frPyObjects(seg, img.height, img.width)
        else:
            rle = seg
        m = mask_utils.decode(rle).astype(bool)
        out[m] = IGNORE if a.get('iscrowd', 0) else cat_to_label[a['category_id']]
    return out


def patch_labels(label_map: np.ndarray, patch: int, num_labels: int) -> np.ndarray:
    """Majority label of each ``patch x patch`` cell of an ``(H, W)`` map (H, W multiples of ``patch``) ->
    ``(H/patch * W/patch,)`` int64 in row-major order; ``IGNORE`` pixels do not vote, an all-ignored cell is
    ``IGNORE``. Ties go to the smaller label."""
    h, w = label_map.shape
    if h % patch or w % patch:
        raise ValueError(f'label map {h}x{w} is not a multiple of the patch size {patch}')
    cells = label_map.reshape(h // patch, patch, w // patch, patch).transpose(0, 2, 1, 3).reshape(-1, patch * patch)
    counts = np.stack([(cells == k).sum(1) for k in range(num_labels)], 1)
    out = counts.argmax(1).astype(np.int64)
    out[counts.sum(1) == 0] = IGNORE
    return out


def resized_image_and_labels(img: ProbeImage, cat_to_label: Dict[int, int], size: int,
                             patch: int) -> Tuple[np.ndarray, np.ndarray]:
    """The image resized (bicubic) to ``size x size`` RGB uint8 and its per-patch labels (labels resized
    nearest-neighbour first, so every pixel keeps a true class)."""
    with Image.open(img.path) as im:
        rgb = np.asarray(im.convert('RGB').resize((size, size), Image.BICUBIC), dtype=np.uint8)
    labels = semantic_map(img, cat_to_label)
    labels = np.asarray(Image.fromarray(labels).resize((size, size), Image.NEAREST))
    return rgb, patch_labels(labels, patch, len(cat_to_label) + 1)


def instance_crops(img: ProbeImage, cat_to_label: Dict[int, int], size: int,
                   min_side: float = 4.0) -> Tuple[List[np.ndarray], List[int]]:
    """Each non-crowd box of the image (at least ``min_side`` px each side) cropped from the original image and
    resized to ``size x size``; returns the RGB uint8 crops and their class indices ``0..C-1``."""
    crops, labels = [], []
    with Image.open(img.path) as im:
        rgb = im.convert('RGB')
        for a in img.anns:
            x, y, w, h = a['bbox']
            if a.get('iscrowd', 0) or w < min_side or h < min_side:
                continue
            box = (int(np.floor(x)), int(np.floor(y)), int(np.ceil(x + w)), int(np.ceil(y + h)))
            crops.append(np.asarray(rgb.crop(box).resize((size, size), Image.BICUBIC), dtype=np.uint8))
            labels.append(cat_to_label[a['category_id']] - 1)
    return crops, labels


def instance_boxes(img: ProbeImage) -> np.ndarray:
    """The image's non-crowd boxes as ``(K, 4)`` float32 ``(x0, y0, x1, y1)`` in fractions of the image's width
    and height: the coordinates they have on the square canvas the probes resize every image to, divided by its
    side. Boxes without area are left out."""
    boxes = []
    for a in img.anns:
        x, y, w, h = (float(v) for v in a['bbox'])
        if a.get('iscrowd', 0) or w <= 0 or h <= 0:
            continue
        boxes.append((x / img.width, y / img.height, (x + w) / img.width, (y + h) / img.height))
    return np.asarray(boxes, np.float32).reshape(-1, 4)
