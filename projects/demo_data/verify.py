"""Check a composed COCO file the way its consumers read it (pycocotools, i.e. mmdet and COCOeval)."""
import os.path as osp
from typing import Dict, Optional

import numpy as np

from .coco_masks import tight_box
from .sources import DemoDataError


def verify_coco(ann_file: str, img_dir: Optional[str] = None, min_area: int = 1, box_tol: float = 1.0,
                area_tol: float = 0.05, max_errors: int = 10) -> Dict:
    """Load ``ann_file`` with pycocotools and check every instance; raise :class:`DemoDataError` listing the
    first problems, else return statistics.

    Checks: ids unique; categories known; ``iscrowd == 0``; ``annToMask`` non-empty and entirely inside
    ``bbox``; the tight box of ``annToMask`` equal to ``bbox`` within ``box_tol`` px; its pixel count equal
    to ``area`` within ``area_tol`` (relative); ``area >= min_area``; with ``img_dir``, every image file
    exists and has the size the file states.
    """
    from pycocotools.coco import COCO
    if not osp.isfile(ann_file):
        raise DemoDataError(f'annotation file not found: {ann_file}')
    try:
        import contextlib
        import io
        with contextlib.redirect_stdout(io.StringIO()):  # COCO() prints progress lines
            coco = COCO(ann_file)
    except Exception as e:  # noqa: BLE001
        raise DemoDataError(f'pycocotools cannot load {ann_file}: {e}') from e
    errors = []
    ann_ids = [a['id'] for a in coco.dataset.get('annotations', [])]
    if len(set(ann_ids)) != len(ann_ids):
        errors.append('annotation ids are not unique')
    cat_ids = set(coco.getCatIds())
    per_class = {c['name']: 0 for c in coco.loadCats(sorted(cat_ids))}
    max_box_err, max_area_err, min_seen_area = 0.0, 0.0, None
    for ann in coco.dataset.get('annotations', []):
        where = f'{osp.basename(ann_file)} annotation {ann["id"]} (image {ann["image_id"]})'
        if ann['category_id'] not in cat_ids:
            errors.append(f'{where}: unknown category_id {ann["category_id"]}')
            continue
        per_class[coco.cats[ann['category_id']]['name']] += 1
        if ann.get('iscrowd', 0) != 0:
            errors.append(f'{where}: iscrowd must be 0')
        m = coco.annToMask(ann).astype(bool)
        box = tight_box(m)
        if box is None:
            errors.append(f'{where}: the segmentation rasterises to an empty mask')
            continue
        x, y, w, h = ann['bbox']
        inside = np.zeros_like(m)
        inside[int(np.floor(y)):int(np.ceil(y + h)), int(np.floor(x)):int(np.ceil(x + w))] = True
        if (m & ~inside).any():
            errors.append(f'{where}: {(m & ~inside).sum()} mask pixels outside bbox {ann["bbox"]}')
        box_err = float(np.abs(np.array(box, float) - np.array(ann['bbox'], float)).max())
        area_err = abs(float(m.sum()) - ann['area']) / max(ann['area'], 1)
        max_box_err, max_area_err = max(max_box_err, box_err), max(max_area_err, area_err)
        if box_err > box_tol:
            errors.append(f'{where}: bbox {ann["bbox"]} differs from the mask tight box {list(box)} by {box_err} px')
        if area_err > area_tol:
            errors.append(f'{where}: area {ann["area"]} differs from the mask pixel count {int(m.sum())}')
        if ann['area'] < min_area:
            errors.append(f'{where}: area {ann["area"]} < min_area {min_area}')
        min_seen_area = ann['area'] if min_seen_area is None else min(min_seen_area, ann['area'])
        if len(errors) >= max_errors:
            break
    if img_dir is not None:
        from PIL import Image
        for img in coco.dataset['images']:
            path = osp.join(img_dir, img['file_name'])
            if not osp.isfile(path):
                errors.append(f'image file missing: {path}')
            else:
                with Image.open(path) as im:
                    if im.size != (img['width'], img['height']):
                        errors.append(f'{path}: size {im.size} but the annotation file says '
                                      f'{(img["width"], img["height"])}')
            if len(errors) >= max_errors:
                break
    if errors:
        raise DemoDataError(f'{ann_file} failed verification:\n  ' + '\n  '.join(errors[:max_errors]))
    return dict(num_images=len(coco.dataset['images']), num_instances=len(ann_ids), per_class=per_class,
                max_box_error_px=max_box_err, max_area_error=max_area_err, min_area=min_seen_area)
