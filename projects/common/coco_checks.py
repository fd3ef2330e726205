"""Checking a COCO-format annotation file before mmdet reads it.

mmdet's ``CocoDataset`` silently drops annotations it cannot use (an ``image_id`` with no image, a box of
width 0, an unknown ``category_id``, a box outside its image), maps config classes to the file's categories
by exact name and drops the classes that do not match, and fails far from the cause on an empty or
malformed file ("need at least one array to concatenate"). pycocotools then crashes *at evaluation*, after
training, on a polygon of fewer than 3 points. :func:`check_coco` makes every one of these visible at load
time: fatal problems raise :class:`CocoFormatError` naming the file; droppable annotations are removed and
reported in one message per file, with counts and example ids per reason (or raised, with ``strict=True``).
Pure Python: used by :mod:`projects.common.coco` (mmdet) and testable without mmdet.
"""
from __future__ import annotations

import json
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

from .errors import BadInputError

EXAMPLES = 5  # example annotation ids shown per reason


class CocoFormatError(BadInputError, ValueError):
    """A COCO annotation file that cannot be used (the message names the file and the problem)."""


def read_coco_json(path: str, local_path: Optional[str] = None) -> dict:
    """``json.load`` with errors naming the file, and the line and column of invalid JSON."""
    try:
        with open(local_path or path, encoding='utf-8') as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f'{path}: COCO annotation file not found') from None
    except json.JSONDecodeError as exc:
        raise CocoFormatError(f'{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}') from None
    except UnicodeDecodeError as exc:
        raise CocoFormatError(f'{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start}); expected COCO '
                              'JSON') from None


def _bad_polygon(seg) -> bool:
    if not isinstance(seg, list):
        return False  # RLE (crowd) annotations are dicts
    return any(not isinstance(p, list) or len(p) < 6 or len(p) % 2 for p in seg)


def _annotation_problem(ann: dict, images: Dict, categories: Dict) -> Optional[str]:
    if ann.get('image_id') not in images:
        return 'image_id not in "images"'
    if ann.get('category_id') not in categories:
        return 'category_id not in "categories"'
    bbox = ann.get('bbox')
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(isinstance(v, (int, float)) for v in bbox):
        return 'bbox missing or not [x, y, w, h]'
    x, y, w, h = bbox
    if w <= 0 or h <= 0:
        return 'bbox width or height <= 0'
    img = images[ann['image_id']]
    if x >= img['width'] or y >= img['height'] or x + w <= 0 or y + h <= 0:
        return 'bbox entirely outside its image'
    if _bad_polygon(ann.get('segmentation')):
        return 'polygon with fewer than 3 points'
    return None


def _names(names: Sequence[str], limit: int = 30) -> str:
    names = list(names)
    return ', '.join(map(repr, names[:limit])) + (f', ... ({len(names)} in all)' if len(names) > limit else '')


def check_coco(data, path: str, classes: Optional[Sequence[str]] = None, test_mode: bool = False,
               strict: bool = False) -> Tuple[dict, Optional[str]]:
    """Validate a loaded COCO dict; return ``(cleaned, report)``.

    ``cleaned`` is ``data`` with the unusable annotations removed; ``report`` is one message naming the file,
    how many annotations were dropped, and per reason the count and example ids (None when nothing was
    dropped). Raises :class:`CocoFormatError` for a file that cannot be used at all, and with ``strict=True``
    also instead of dropping. ``classes`` are the config's class names (``metainfo.classes``); each must be a
    category name of the file. ``test_mode`` allows a file without ``annotations`` (an image-info file).
    """
    if not isinstance(data, dict):
        raise CocoFormatError(f'{path}: the top level is a {type(data).__name__}; expected a COCO object with '
                              '"images", "annotations" and "categories"')
    for key in ('images', 'categories'):
        if key not in data:
            raise CocoFormatError(f'{path}: no "{key}" key (keys: {", ".join(map(str, data)) or "none"}); a COCO '
                                  'annotation file needs "images", "annotations" and "categories"')
        if not isinstance(data[key], list) or not data[key]:
            raise CocoFormatError(f'{path}: "{key}" is empty or not a list')
    if 'annotations' not in data and not test_mode:
        raise CocoFormatError(f'{path}: no "annotations" key: nothing to train on')
    anns = data.get('annotations', [])
    if not isinstance(anns, list) or ('annotations' in data and not anns):
        raise CocoFormatError(f'{path}: "annotations" is empty or not a list: nothing to train or evaluate on')

    images = {}
    for i, img in enumerate(data['images']):
        lacking = [k for k in ('id', 'file_name', 'width', 'height') if not isinstance(img, dict) or k not in img]
        if lacking:
            raise CocoFormatError(f'{path}: images[{i}] has no {", ".join(lacking)}')
        if img['id'] in images:
            raise CocoFormatError(f'{path}: image id {img["id"]} appears twice in "images"')
        images[img['id']] = img
    categories = {}
    for i, cat in enumerate(data['categories']):
        if not isinstance(cat, dict) or 'id' not in cat or 'name' not in cat:
            raise CocoFormatError(f'{path}: categories[{i}] needs "id" and "name"')
        categories[cat['id']] = cat['name']

    if classes is not None:
        file_names = list(categories.values())
        absent = [c for c in classes if c not in file_names]
        if absent:
            lower = {n.lower(): n for n in file_names}
            by_case = [f'{c!r} vs {lower[c.lower()]!r}' for c in absent if c.lower() in lower]
            raise CocoFormatError(
                f'{path}: config classes not among the file\'s categories: {_names(absent)}'
                + (f' (they differ only by case: {", ".join(by_case)})' if by_case else '')
                + f'.\n  config classes: {_names(classes)}\n  file categories: {_names(file_names)}\n'
                'Set metainfo=dict(classes=...) to names spelled exactly as in the file.')

    dropped: Dict[str, List] = OrderedDict()
    kept, seen = [], set()
    for i, ann in enumerate(anns):
        if not isinstance(ann, dict) or 'id' not in ann:
            raise CocoFormatError(f'{path}: annotations[{i}] is not an object with an "id"')
        if ann['id'] in seen:
            raise CocoFormatError(f'{path}: annotation id {ann["id"]} appears twice')
        seen.add(ann['id'])
        problem = _annotation_problem(ann, images, categories)
        if problem is None:
            kept.append(ann)
        else:
            dropped.setdefault(problem, []).append(ann['id'])
    report = None
    if dropped:
        total = sum(len(v) for v in dropped.values())
        parts = [f'{len(ids)} with {reason} (ids {", ".join(map(str, ids[:EXAMPLES]))}'
                 + (', ...)' if len(ids) > EXAMPLES else ')') for reason, ids in dropped.items()]
        if strict:
            raise CocoFormatError(f'{path}: strict=True and {total} of {len(anns)} annotations are unusable: '
                                  + '; '.join(parts))
        report = f'{path}: dropped {total} of {len(anns)} annotations: ' + '; '.join(parts)
        if not kept and not test_mode:
            raise CocoFormatError(report + '; no usable annotation is left')
        report += " (set the dataset's strict=True to make this an error)"
    cleaned = dict(data)
    if 'annotations' in data:
        cleaned['annotations'] = kept
    return cleaned, report
