"""mmdet's COCO dataset and metric with the checks of :mod:`projects.common.coco_checks`.

``CheckedCocoDataset`` and ``CheckedCocoMetric`` (registered in mmdet's registries) read the annotation file
once, raise for a file that cannot be used, and drop unusable annotations with one warning per file (or
raise, with ``strict=True``). The metric drops the same annotations from the ground truth, so evaluation
never meets an annotation the training never saw (a polygon of fewer than 3 points crashes pycocotools).
"""
from __future__ import annotations

import functools
import logging
from typing import Optional

from mmdet.datasets import CocoDataset
from mmdet.datasets.api_wrappers import COCO
from mmdet.evaluation import CocoMetric
from mmdet.registry import DATASETS, METRICS
from mmengine.fileio import get_local_path
from mmengine.logging import print_log

from .coco_checks import check_coco, read_coco_json


def coco_from_dict(dataset: dict, _path: Optional[str] = None) -> COCO:
    """A pycocotools/mmdet ``COCO`` index over an already loaded (and checked) dict."""
    coco = COCO()
    coco.dataset = dataset
    coco.createIndex()
    # mmdet's COCO aliases these to pycocotools' indexes in __init__, before any index exists
    coco.img_ann_map, coco.cat_img_map = coco.imgToAnns, coco.catToImgs
    return coco


def load_checked_coco(ann_file: str, backend_args=None, classes=None, test_mode: bool = False,
                      strict: bool = False) -> dict:
    with get_local_path(ann_file, backend_args=backend_args) as local_path:
        data = read_coco_json(ann_file, local_path)
    cleaned, report = check_coco(data, ann_file, classes=classes, test_mode=test_mode, strict=strict)
    if report:
        print_log(report, logger='current', level=logging.WARNING)
    return cleaned


@DATASETS.register_module()
class CheckedCocoDataset(CocoDataset):
    """mmdet's ``CocoDataset`` that checks its annotation file first (see module docstring).

    Args:
        strict: raise instead of dropping unusable annotations with a warning.
    """

    def __init__(self, *args, strict: bool = False, **kwargs):
        self.strict = strict
        super().__init__(*args, **kwargs)

    def load_data_list(self):
        cleaned = load_checked_coco(self.ann_file, self.backend_args, self.metainfo.get('classes'),
                                    self.test_mode, self.strict)
        self.COCOAPI = functools.partial(coco_from_dict, cleaned)  # mmdet's loop then indexes the checked dict
        try:
            return super().load_data_list()
        finally:
            del self.COCOAPI


@METRICS.register_module()
class CheckedCocoMetric(CocoMetric):
    """mmdet's ``CocoMetric`` whose ground truth comes through the same checks as the dataset's."""

    def __init__(self, ann_file: Optional[str] = None, strict: bool = False, **kwargs):
        sort_categories = kwargs.get('sort_categories', False)
        super().__init__(ann_file=None, **kwargs)
        if ann_file is not None:
            self._coco_api = coco_from_dict(load_checked_coco(ann_file, self.backend_args, strict=strict))
            if sort_categories:  # as CocoMetric does for objects365
                self._coco_api.cats = {i: self._coco_api.cats[i] for i in sorted(self._coco_api.cats)}
                self._coco_api.dataset['categories'] = sorted(self._coco_api.dataset['categories'],
                                                              key=lambda c: c['id'])
