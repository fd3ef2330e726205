"""Compose a COCO instance-segmentation split: shapes (:mod:`.shapes`) pasted onto crops of real photos.

Per image: a random square crop of one background photo (flipped at random) resized to ``image_size``;
then 2-7 objects, each a random class, size (log-uniform radius), aspect, rotation and position, with an
appearance from :mod:`.textures`, pasted in order (later objects occlude earlier ones). A new object is
rejected (and another drawn) if it would leave any earlier object with a visible area below
``max(min_area, min_visible * its full area)`` or with a hole in its visible mask, so **every painted
object is annotated** and every visible mask is exactly representable by COCO polygons. Annotations
are computed from the final visible masks: ``bbox`` is their tight box, ``area`` their pixel count,
``segmentation`` polygons that rasterise back to the same pixels (:mod:`.coco_masks`).

Everything is a function of ``(seed, split, image index)`` and the sorted background list, so the same
arguments give byte-identical annotation files.
"""
import hashlib
import json
import os
import os.path as osp
import zlib
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image

from .coco_masks import has_hole, mask_to_polygons, tight_box
from .shapes import CLASSES, place, rasterise, unit_shape
from .sources import DemoDataError
from .textures import make_texture

COMPOSE_VERSION = 1  # bump when the recipe changes what is generated


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


class _PhotoCache:
    """Small LRU of decoded RGB photos (the same few hundred files are read again and again)."""

    def __init__(self, size: int = 64):
        self.size, self.data = size, OrderedDict()

    def __call__(self, path: str) -> np.ndarray:
        if path in self.data:
            self.data.move_to_end(path)
            return self.data[path]
        try:
            with Image.open(path) as im:
                arr = np.asarray(im.convert('RGB'))
        except Exception as e:  # noqa: BLE001
            raise DemoDataError(f'cannot read background/texture image {path}: {e}') from e
        if min(arr.shape[:2]) < 16:
            raise DemoDataError(f'background/texture image {path} is too small ({arr.shape[1]}x{arr.shape[0]})')
        self.data[path] = arr
        if len(self.data) > self.size:
            self.data.popitem(last=False)
        return arr


def _background(photo: np.ndarray, size: int, rng: np.random.Generator, crop_scale) -> Tuple[np.ndarray, List]:
    h, w = photo.shape[:2]
    side = max(8, int(round(min(h, w) * rng.uniform(*crop_scale))))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = photo[y:y + side, x:x + side]
    flip = bool(rng.random() < 0.5)
    if flip:
        crop = crop[:, ::-1]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    img = cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=interp).astype(np.float32)
    img = np.clip(img * rng.uniform(0.85, 1.15), 0, 255)
    return img, [x, y, side, int(flip)]


def _sample_object(rng, size, classes, scale_range):
    cls = int(rng.integers(len(classes)))
    radius = size * float(np.exp(rng.uniform(np.log(scale_range[0]), np.log(scale_range[1]))))
    aspect = rng.uniform(0.45, 1.0) if classes[cls] in ('ellipse', 'rectangle') else rng.uniform(0.7, 1.0)
    center = rng.uniform(0.05, 0.95, 2) * size
    ops = place(unit_shape(classes[cls], rng), center, radius, aspect, rng.uniform(0, 2 * np.pi))
    alpha, x0, y0 = rasterise(ops)
    return cls, alpha, x0, y0


def _clip(alpha, x0, y0, size):
    """Alpha placed on the full image (only the part inside it) and its full (unclipped) mask area."""
    full_area = int((alpha >= 0.5).sum())
    h, w = alpha.shape
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + w, size), min(y0 + h, size)
    if ix1 <= ix0 or iy1 <= iy0:
        return None, None, full_area
    a = alpha[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0]
    return a, (ix0, iy0, ix1, iy1), full_area


def compose_image(photo: np.ndarray, rng: np.random.Generator, size: int, classes: Sequence[str],
                  get_texture_photo=None, objects_per_image=(2, 7), scale_range=(0.05, 0.3), min_area=64,
                  min_visible=0.3, crop_scale=(0.6, 1.0), max_tries=12):
    """One composed image. Returns ``(rgb uint8 (size, size, 3), objects, bg_crop)`` where ``objects`` is a
    list of ``(class index, visible mask bool (size, size))`` in paste order."""
    img, bg_crop = _background(photo, size, rng, crop_scale)
    n_target = int(rng.integers(objects_per_image[0], objects_per_image[1] + 1))
    placed = []  # [cls, visible mask, box (x0, y0, x1, y1) of the full mask, full area]
    tries = 0
    while len(placed) < n_target and tries < n_target * max_tries:
        tries += 1
        cls, alpha, x0, y0 = _sample_object(rng, size, classes, scale_range)
        a, box, full_area = _clip(alpha, x0, y0, size)
        if a is None:
            continue
        bx0, by0, bx1, by1 = box
        cand = np.zeros((size, size), bool)
        cand[by0:by1, bx0:bx1] = a >= 0.5
        if cand.sum() < max(min_area, min_visible * full_area):
            continue
        ok = True
        updates = []
        for k, (_, vis, pbox, pfull) in enumerate(placed):
            if pbox[0] >= bx1 or bx0 >= pbox[2] or pbox[1] >= by1 or by0 >= pbox[3]:
                continue  # boxes do not overlap
            new_vis = vis & ~cand
            sub = new_vis[pbox[1]:pbox[3], pbox[0]:pbox[2]]
            if new_vis.sum() < max(min_area, min_visible * pfull) or has_hole(np.pad(sub, 1)):
                ok = False
                break
            updates.append((k, new_vis))
        if not ok:
            continue
        for k, new_vis in updates:
            placed[k][1] = new_vis
        tex = make_texture(by1 - by0, bx1 - bx0, rng, get_texture_photo)
        region = img[by0:by1, bx0:bx1]
        img[by0:by1, bx0:bx1] = a[..., None] * tex + (1 - a[..., None]) * region
        placed.append([cls, cand, box, full_area])
    return np.clip(np.round(img), 0, 255).astype(np.uint8), [(p[0], p[1]) for p in placed], bg_crop


def _split_code(split: str) -> int:
    return zlib.crc32(split.encode())  # stable across processes (unlike hash())


def compose_coco(backgrounds: Sequence[str], out_dir: str, seed: int = 0, num_images: int = 200,
                 split: str = 'train', image_size: int = 256, textures: Optional[Sequence[str]] = None,
                 classes: Sequence[str] = CLASSES, objects_per_image: Tuple[int, int] = (2, 7),
                 scale_range: Tuple[float, float] = (0.05, 0.3), min_area: int = 64, min_visible: float = 0.3,
                 jpeg_quality: int = 90, background_ids: Optional[Dict[str, str]] = None,
                 progress: bool = True) -> Dict:
    """Write ``out_dir/<split>/*.jpg`` and ``out_dir/annotations/instances_<split>.json`` (COCO format).

    Args:
        backgrounds: image files to crop backgrounds from (any list; sorted internally, so the order
            given does not matter). Every file is used about equally often.
        textures: image files to cut object textures from (default: ``backgrounds``); a texture is never
            cut from the image's own background photo when another is available.
        background_ids: ``{path: id}`` written as each image's ``background`` field (default: file name).
    Returns:
        summary dict: ``ann_file``, ``img_dir``, ``num_images``, ``num_instances``, ``per_class``,
        ``sha256`` (of the annotation file), ``backgrounds`` (ids used).
    """
    if not backgrounds:
        raise DemoDataError(f'compose_coco({split!r}): the background list is empty')
    missing = [p for p in backgrounds if not osp.isfile(p)]
    if missing:
        raise DemoDataError(f'compose_coco({split!r}): background file(s) not found: {missing[:5]}')
    if num_images < 1:
        raise DemoDataError(f'compose_coco: num_images must be >= 1, got {num_images}')
    if image_size < 32:
        raise DemoDataError(f'compose_coco: image_size must be >= 32 px, got {image_size}')
    if not 1 <= objects_per_image[0] <= objects_per_image[1]:
        raise DemoDataError(f'compose_coco: objects_per_image must be (lo, hi) with 1 <= lo <= hi, '
                            f'got {objects_per_image}')
    unknown = [c for c in classes if c not in CLASSES]
    if unknown:
        raise DemoDataError(f'compose_coco: unknown class(es) {unknown}; expected a subset of {CLASSES}')
    backgrounds = sorted(backgrounds)
    textures = sorted(textures) if textures else backgrounds
    ids = background_ids or {}
    img_dir = osp.join(out_dir, split)
    ann_dir = osp.join(out_dir, 'annotations')
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(ann_dir, exist_ok=True)
    code = _split_code(split)
    order = np.random.default_rng([seed, code]).permutation(len(backgrounds))
    cache = _PhotoCache()

    images, annotations = [], []
    per_class = [0] * len(classes)
    bar = _progress(num_images, f'compose {split}', progress)
    for idx in range(num_images):
        rng = np.random.default_rng([seed, code, idx])
        bg_path = backgrounds[order[idx % len(backgrounds)]]
        others = [t for t in textures if t != bg_path] or textures

        def get_texture_photo(r, others=others):
            return cache(others[int(r.integers(len(others)))])

        rgb, objects, bg_crop = compose_image(
            cache(bg_path), rng, image_size, classes, get_texture_photo, objects_per_image, scale_range,
            min_area, min_visible)
        file_name = f'{split}_{idx:06d}.jpg'
        Image.fromarray(rgb).save(osp.join(img_dir, file_name), quality=jpeg_quality)
        image_id = idx + 1
        images.append(dict(id=image_id, file_name=file_name, height=image_size, width=image_size,
                           background=ids.get(bg_path, osp.basename(bg_path)), background_crop=bg_crop))
        for cls, vis in objects:
            x, y, w, h = tight_box(vis)
            crop = vis[y:y + h, x:x + w]
            annotations.append(dict(
                id=len(annotations) + 1, image_id=image_id, category_id=cls + 1,
                segmentation=mask_to_polygons(crop, offset=(x, y)), area=int(vis.sum()),
                bbox=[float(x), float(y), float(w), float(h)], iscrowd=0))
            per_class[cls] += 1
        bar.update(1)
    bar.close()

    coco = dict(
        info=dict(description=f'demo instance segmentation ({split}): generated shapes composed onto real photo '
                              f'crops; see data README', version=str(COMPOSE_VERSION), seed=seed),
        licenses=[],
        categories=[dict(id=i + 1, name=c, supercategory='shape') for i, c in enumerate(classes)],
        images=images, annotations=annotations)
    ann_file = osp.join(ann_dir, f'instances_{split}.json')
    tmp = ann_file + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(coco, f, separators=(',', ':'))
    os.replace(tmp, ann_file)
    return dict(ann_file=ann_file, img_dir=img_dir, num_images=len(images), num_instances=len(annotations),
                per_class=dict(zip(classes, per_class)), sha256=sha256_file(ann_file),
                backgrounds=sorted({im['background'] for im in images}))


def _progress(total: int, desc: str, enabled: bool):
    try:
        from tqdm import tqdm
        return tqdm(total=total, desc=desc, disable=not enabled, mininterval=2.0, leave=enabled)
    except ImportError:  # tqdm is in the requirements; this only keeps the package importable without it
        class _Null:
            def update(self, n):
                pass

            def close(self):
                pass
        return _Null()

