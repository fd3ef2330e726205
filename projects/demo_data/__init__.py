"""Offline demo data: a pool of real photographs from PyPI packages and a composed COCO instance-segmentation set.

Pure Python (PIL, NumPy, OpenCV, shapely, pycocotools); registers nothing. Entry points:
:func:`prepare` (everything, as ``tools/data/prepare_demo_data.py`` runs it), :func:`compose_coco`
(one COCO split from any list of background images), :func:`build_photo_pool` (photos from packages).
See ``docs/demo_data.md``.
"""
from .coco_masks import has_hole, mask_to_polygons, polygons_to_mask, roundtrip_iou, tight_box
from .compose_coco import compose_coco, compose_image, sha256_file
from .prepare import prepare, split_by_group
from .shapes import CLASSES
from .sources import SOURCES, DemoDataError, Source, pip_download, resolve_sources
from .unlabeled_pool import build_photo_pool
from .verify import verify_coco

__all__ = [
    'CLASSES', 'SOURCES', 'DemoDataError', 'Source', 'build_photo_pool', 'compose_coco', 'compose_image',
    'has_hole', 'mask_to_polygons', 'pip_download', 'polygons_to_mask', 'prepare', 'resolve_sources',
    'roundtrip_iou', 'sha256_file', 'split_by_group', 'tight_box', 'verify_coco'
]
