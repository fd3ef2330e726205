"""Reading one Pascal VOC annotation file, with errors that name the file and the field.

Coordinates: VOC writes 1-based inclusive pixel indices (``xmin=1`` is the first column). They are turned
into continuous ``(x1, y1, x2, y2)`` with ``x1 = xmin - 1, y1 = ymin - 1, x2 = xmax, y2 = ymax``, so a box
covering the whole image is ``(0, 0, W, H)``. A raw box is valid when ``0 <= xmin <= xmax <= width`` and
``0 <= ymin <= ymax <= height`` (``xmin = 0`` is accepted because some tools write 0-based files; the box
is then clipped at 0).
"""
from __future__ import annotations

import os.path as osp
import xml.etree.ElementTree as ET
from typing import Dict, List, Optional, Sequence

from projects.common.errors import BadInputError

INVALID_BOX_POLICIES = ('error', 'clip', 'skip')


class VOCAnnotationError(BadInputError, ValueError):
    """A VOC XML file is malformed or holds a value outside what the format allows."""


def _text(node: Optional[ET.Element]) -> Optional[str]:
    return None if node is None or node.text is None else node.text.strip()


def _number(xml_path: str, field: str, node: Optional[ET.Element]) -> float:
    text = _text(node)
    if text is None or text == '':
        raise VOCAnnotationError(f'{xml_path}: field <{field}> is missing or empty')
    try:
        return float(text)
    except ValueError:
        raise VOCAnnotationError(f'{xml_path}: field <{field}> is {text!r}, expected a number') from None


def _image_size(xml_path: str, root: ET.Element, img_path: Optional[str]):
    size = root.find('size')
    if size is not None and _text(size.find('width')) and _text(size.find('height')):
        width = _number(xml_path, 'size/width', size.find('width'))
        height = _number(xml_path, 'size/height', size.find('height'))
        if width > 0 and height > 0:
            return width, height
    # VOC always has <size>; other exporters sometimes leave it out or write 0: read the image header.
    if img_path is not None and osp.isfile(img_path):
        from PIL import Image
        with Image.open(img_path) as img:
            return float(img.width), float(img.height)
    raise VOCAnnotationError(f'{xml_path}: field <size> (width/height) is missing or 0, and the image '
                             f'{img_path} to read the size from does not exist')


def parse_voc_xml(xml_path: str, classes: Sequence[str], img_path: Optional[str] = None,
                  invalid_boxes: str = 'error') -> Dict:
    """Parse one VOC XML file.

    Args:
        xml_path: the annotation file.
        classes: the known class names; the label of an object is its index here.
        img_path: the image, only read when the file has no usable <size>.
        invalid_boxes: what to do with a box outside the image or with xmin > xmax: ``'error'`` (raise),
            ``'clip'`` (clip to the image; a box left empty is dropped) or ``'skip'`` (drop the object).

    Returns:
        ``dict(width, height, objects=[dict(name, label, bbox=[x1, y1, x2, y2], difficult, index)], dropped)``;
        ``dropped`` counts the objects left out by ``invalid_boxes='clip'``/``'skip'``.
    """
    if invalid_boxes not in INVALID_BOX_POLICIES:
        raise ValueError(f'invalid_boxes must be one of {INVALID_BOX_POLICIES}, got {invalid_boxes!r}')
    if not osp.isfile(xml_path):
        raise FileNotFoundError(f'{xml_path}: annotation file not found')
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as exc:
        raise VOCAnnotationError(f'{xml_path}: malformed VOC XML ({exc})') from None
    if root.tag != 'annotation':
        raise VOCAnnotationError(f'{xml_path}: root element is <{root.tag}>, expected <annotation>')
    width, height = _image_size(xml_path, root, img_path)
    class_to_label = {name: i for i, name in enumerate(classes)}
    objects: List[Dict] = []
    dropped = 0
    for index, obj in enumerate(root.findall('object')):
        where = f'object {index}'
        name = _text(obj.find('name'))
        if not name:
            raise VOCAnnotationError(f'{xml_path}: {where}: field <name> is missing or empty')
        if name not in class_to_label:
            shown = ', '.join(classes) if len(classes) <= 30 else ', '.join(classes[:30]) + ', ...'
            raise VOCAnnotationError(f'{xml_path}: {where}: field <name> is {name!r}, not one of the '
                                     f'{len(classes)} classes ({shown}); pass `classes=` to use another set')
        where = f"{where} ('{name}')"
        difficult_text = _text(obj.find('difficult'))
        try:
            difficult = bool(int(float(difficult_text))) if difficult_text else False
        except ValueError:
            raise VOCAnnotationError(f'{xml_path}: {where}: field <difficult> is {difficult_text!r}, '
                                     'expected 0 or 1') from None
        bnd = obj.find('bndbox')
        if bnd is None:
            raise VOCAnnotationError(f'{xml_path}: {where}: field <bndbox> is missing')
        xmin, ymin, xmax, ymax = (_number(xml_path, f'{where}/bndbox/{k}', bnd.find(k))
                                  for k in ('xmin', 'ymin', 'xmax', 'ymax'))
        problems = []
        for lo_name, lo, hi_name, hi, limit_name, limit in (('xmin', xmin, 'xmax', xmax, 'width', width),
                                                            ('ymin', ymin, 'ymax', ymax, 'height', height)):
            if lo < 0:
                problems.append(f'{lo_name}={lo:g} < 0')
            if hi > limit:
                problems.append(f'{hi_name}={hi:g} > image {limit_name} {limit:g}')
            if lo > hi:
                problems.append(f'{lo_name}={lo:g} > {hi_name}={hi:g}')
        if problems and invalid_boxes == 'error':
            raise VOCAnnotationError(f'{xml_path}: {where}: field <bndbox> is outside the image or inverted ('
                                     + '; '.join(problems) + '); expected 0 <= xmin <= xmax <= width and '
                                     "0 <= ymin <= ymax <= height (or set invalid_boxes='clip'/'skip')")
        if problems and invalid_boxes == 'skip':
            dropped += 1
            continue
        x1, y1 = min(max(xmin - 1.0, 0.0), width), min(max(ymin - 1.0, 0.0), height)
        x2, y2 = min(max(xmax, 0.0), width), min(max(ymax, 0.0), height)
        if x2 <= x1 or y2 <= y1:  # only reachable with 'clip'
            dropped += 1
            continue
        objects.append(dict(name=name, label=class_to_label[name], bbox=[x1, y1, x2, y2],
                            difficult=difficult, index=index))
    return dict(width=width, height=height, objects=objects, dropped=dropped)
