"""mmdet's COCO dataset and metric with the checks of :mod:`projects.common.coco_checks`.

``CheckedCocoDataset`` and ``CheckedCocoMetric`` (registered in mmdet's registries) read the annotation file
once, raise for a file that cannot be used, and drop unusable annotations with one warning per file (or
raise, with ``strict=True``). The metric drops the same annotations from the ground truth, so evaluation
never meets an annotation the training never saw (a polygon of fewer than 3 points crashes pycocotools).

The image sizes the file gives (``images[].width/height``) can only be compared with the files when the images
are read: ``CheckImageSize``, which the dataset puts right after the pipeline's image loading, does that (mmdet
builds polygon masks for the loaded image's size and rescales boxes by it, so annotations made for another size
land in the wrong place without any message).
"""
from __future__ import annotations

import functools
import logging
from typing import Optional

from mmcv.transforms import BaseTransform
from mmdet.datasets import CocoDataset
from mmdet.datasets.api_wrappers import COCO
from mmdet.evaluation import CocoMetric
from mmdet.registry import DATASETS, METRICS, TRANSFORMS
from mmengine.fileio import get_local_path
from mmengine.logging import print_log

from .coco_checks import CocoFormatError, check_coco, read_coco_json


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


class ImageSizeMismatchError(CocoFormatError):
    """An image file whose size is not the one its annotation file gives (with ``strict=True``)."""


@TRANSFORMS.register_module()
class CheckImageSize(BaseTransform):
    """Compare the loaded image's size (``ori_shape``, set by the loading transform) with the ``width`` and
    ``height`` of its annotation (mmdet's COCO data info).

    A mismatch is warned about once per file, naming the file and both sizes, with the number of files found so
    far (in this process: each data-loader worker counts its own); with ``strict=True`` it raises
    :class:`ImageSizeMismatchError`. Samples without both sizes pass unchecked.

    Args:
        strict: raise instead of warning.
        ann_file: the annotation file, for the messages.
    """

    def __init__(self, strict: bool = False, ann_file: Optional[str] = None):
        self.strict = strict
        self.ann_file = ann_file
        self._warned: set = set()

    def transform(self, results: dict) -> dict:
        width, height, shape = results.get('width'), results.get('height'), results.get('ori_shape')
        if width is None or height is None or shape is None:
            return results
        h, w = (int(v) for v in shape[:2])
        if (w, h) == (int(width), int(height)):
            return results
        path = results.get('img_path', f"image id {results.get('img_id')}")
        msg = (f'{path}: the image is {w}x{h} px, but {self.ann_file or "its annotation file"} gives width={width}, '
               f'height={height}; its boxes and masks would be placed for the wrong size')
        if self.strict:
            raise ImageSizeMismatchError(msg + ' (strict=True)')
        if path not in self._warned:
            self._warned.add(path)
            print_log(f'{msg} ({len(self._warned)} such file(s) so far; not repeated for this file)',
                      logger='current', level=logging.WARNING)
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(strict={self.strict})'


@DATASETS.register_module()
class CheckedCocoDataset(CocoDataset):
    """mmdet's ``CocoDataset`` that checks its annotation file first (see module docstring).

    Args:
        strict: raise instead of dropping unusable annotations with a warning, and for an image whose size is
            not the annotated one.
        check_image_size: put :class:`CheckImageSize` right after the pipeline's first image-loading transform
            (``LoadImageFrom...``), unless the pipeline already has one.
    """

    def __init__(self, *args, strict: bool = False, check_image_size: bool = True, **kwargs):
        self.strict = strict
        super().__init__(*args, **kwargs)
        transforms = self.pipeline.transforms
        if check_image_size and not any(isinstance(t, CheckImageSize) for t in transforms):
            loading = next((i for i, t in enumerate(transforms) if type(t).__name__.startswith('LoadImageFrom')),
                           None)
            if loading is not None:
                transforms.insert(loading + 1, CheckImageSize(strict=strict, ann_file=self.ann_file))

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
