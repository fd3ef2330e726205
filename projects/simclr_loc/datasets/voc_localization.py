"""Pascal VOC as a one-object-per-image localisation dataset (the classify-and-localise protocol).

Layout of each source (a VOC year folder, e.g. ``data/VOCdevkit/VOC2007``)::

    <root>/JPEGImages/<id>.jpg
    <root>/Annotations/<id>.xml
    <root>/ImageSets/Main/<split>.txt      # one image id per line

The target of an image is its **largest non-difficult object** (box area; the first in file order on ties).
Images without a target are left out, named in the log by reason: no ``<object>`` in the XML (a warning: a VOC
image always has one), every object dropped by ``invalid_boxes``, or only "difficult" objects.
"""
from __future__ import annotations

import logging
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from mmengine.logging import print_log
from mmpretrain.datasets import BaseDataset
from mmpretrain.registry import DATASETS

from .label_subset import stratified_subset
from .voc_xml import parse_voc_xml

VOC_CLASSES = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow',
               'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa', 'train',
               'tvmonitor')

SourceSpec = Union[Dict, Sequence[str]]


def _normalise_sources(sources: Optional[Sequence[SourceSpec]], data_root: str,
                       split: Optional[str]) -> List[Tuple[str, str]]:
    if sources is None:
        if split is None:
            raise ValueError('VOCLocalizationDataset: give `sources=[dict(data_root=..., split=...), ...]` '
                             'or `data_root=` and `split=`')
        return [(data_root, split)]
    if isinstance(sources, (str, dict)) or not len(sources):
        raise ValueError('VOCLocalizationDataset: `sources` must be a non-empty list of dict(data_root=..., '
                         f'split=...) or (data_root, split) pairs, got {sources!r}')
    out = []
    for i, src in enumerate(sources):
        if isinstance(src, dict):
            unknown = set(src) - {'data_root', 'split'}
            if unknown or 'data_root' not in src or 'split' not in src:
                raise ValueError(f'VOCLocalizationDataset: sources[{i}] must have exactly the keys data_root and '
                                 f'split, got {sorted(src)}')
            root, sp = src['data_root'], src['split']
        elif len(src) == 2:
            root, sp = src
        else:
            raise ValueError(f'VOCLocalizationDataset: sources[{i}] must be dict(data_root=..., split=...) or a '
                             f'(data_root, split) pair, got {src!r}')
        # a relative source root is relative to the dataset's data_root (mmengine's convention for paths)
        out.append((root if osp.isabs(root) or not data_root else osp.join(data_root, root), sp))
    return out


@DATASETS.register_module()
class VOCLocalizationDataset(BaseDataset):
    """VOC images with their largest non-difficult object as the classify-and-localise target.

    Each data info holds ``img_path``, ``img_id``, ``source``, ``gt_label`` (int), ``gt_bboxes`` (float32
    ``(1, 4)`` xyxy pixels: the target; transforms such as ``Resize``/``RandomFlip`` update it),
    ``ori_gt_bboxes`` (the same box, never transformed: what the metric compares the prediction with) and
    ``instances`` (every parsed object: ``bbox``, ``bbox_label``, ``difficult``).

    Args:
        sources: the (data_root, split) pairs to concatenate, e.g. VOC2007 + VOC2012 trainval:
            ``[dict(data_root='VOC2007', split='trainval'), dict(data_root='VOC2012', split='trainval')]``.
            Relative roots are joined to ``data_root``.
        data_root: prefix of relative source roots; or, with ``split`` and no ``sources``, the one source.
        split: see ``data_root``.
        label_fraction: keep this share of the images, class-stratified by target label, deterministic for
            ``subset_seed`` and nested across fractions (see :mod:`.label_subset`). Defaults to 1.0.
        subset_seed: seed of the label-fraction subset. Defaults to 0.
        img_subdir, ann_subdir, img_suffix: the VOC layout. Defaults to JPEGImages, Annotations, '.jpg'.
        invalid_boxes: ``'error'`` (default), ``'clip'`` or ``'skip'`` for boxes outside the image.
        classes: class names (default: the 20 VOC classes).
        **kwargs: passed to :class:`mmpretrain.datasets.BaseDataset` (pipeline, test_mode, lazy_init, ...).
    """
    METAINFO = dict(classes=VOC_CLASSES)

    def __init__(self, sources: Optional[Sequence[SourceSpec]] = None, data_root: str = '',
                 split: Optional[str] = None, label_fraction: float = 1.0, subset_seed: int = 0,
                 img_subdir: str = 'JPEGImages', ann_subdir: str = 'Annotations', img_suffix: str = '.jpg',
                 invalid_boxes: str = 'error', classes: Optional[Sequence[str]] = None, **kwargs) -> None:
        if not isinstance(label_fraction, (int, float)) or not 0.0 < float(label_fraction) <= 1.0:
            raise ValueError(f'VOCLocalizationDataset: label_fraction must be in (0, 1], got {label_fraction!r}')
        self.sources = _normalise_sources(sources, data_root, split)
        self.label_fraction = float(label_fraction)
        self.subset_seed = int(subset_seed)
        self.img_subdir, self.ann_subdir, self.img_suffix = img_subdir, ann_subdir, img_suffix
        self.invalid_boxes = invalid_boxes
        # data_root is consumed by the sources; the base class must not join it to anything again
        super().__init__(ann_file='', data_root='', classes=classes, **kwargs)

    def _read_split(self, root: str, split: str, index: int) -> List[str]:
        split_file = osp.join(root, 'ImageSets', 'Main', f'{split}.txt')
        if not osp.isfile(split_file):
            raise FileNotFoundError(
                f'{split_file}: split file not found (sources[{index}]: data_root={root!r}, split={split!r}); '
                f'expected a VOC folder with {self.img_subdir}/, {self.ann_subdir}/ and ImageSets/Main/')
        with open(split_file) as f:
            ids = [line.split()[0] for line in f if line.strip()]
        if not ids:
            raise ValueError(f'{split_file}: the split file lists no image ids')
        return ids

    def load_data_list(self) -> List[dict]:
        classes = tuple(self.metainfo['classes'])
        data_list = []
        left_out: Dict[str, List[str]] = {'no_object': [], 'dropped': [], 'difficult': []}
        for index, (root, split) in enumerate(self.sources):
            for img_id in self._read_split(root, split, index):
                img_path = osp.join(root, self.img_subdir, img_id + self.img_suffix)
                xml_path = osp.join(root, self.ann_subdir, img_id + '.xml')
                ann = parse_voc_xml(xml_path, classes, img_path, self.invalid_boxes)
                candidates = [o for o in ann['objects'] if not o['difficult']]
                if not candidates:
                    reason = 'difficult' if ann['objects'] else 'dropped' if ann.get('dropped') else 'no_object'
                    left_out[reason].append(xml_path)
                    continue
                # largest box; max() keeps the first of equal areas
                target = max(candidates, key=lambda o: (o['bbox'][2] - o['bbox'][0]) * (o['bbox'][3] - o['bbox'][1]))
                box = np.array([target['bbox']], dtype=np.float32)
                data_list.append(dict(
                    img_path=img_path, img_id=img_id, source=root, width=ann['width'], height=ann['height'],
                    gt_label=int(target['label']), gt_bboxes=box, ori_gt_bboxes=box.copy(),
                    instances=[dict(bbox=o['bbox'], bbox_label=o['label'], difficult=o['difficult'])
                               for o in ann['objects']]))
        for reason, text, level in (
                ('no_object', 'with no <object> in the annotation file', logging.WARNING),
                ('dropped', f"whose every object was dropped by invalid_boxes='{self.invalid_boxes}'", logging.WARNING),
                ('difficult', 'with only "difficult" objects', logging.INFO)):
            files = left_out[reason]
            if files:
                print_log(f'VOCLocalizationDataset: {len(files)} image(s) {text} left out: ' + ', '.join(files[:10])
                          + (f', ... ({len(files) - 10} more)' if len(files) > 10 else ''), logger='current',
                          level=level)
        if not data_list:
            short = {'no_object': 'no <object>', 'dropped': 'objects dropped', 'difficult': 'only difficult'}
            counts = ', '.join(f'{len(v)} with {short[k]}' for k, v in left_out.items() if v)
            raise ValueError(f'VOCLocalizationDataset: no image with a non-difficult object in {self.sources} '
                             f'(left out: {counts})')
        total = len(data_list)
        if self.label_fraction < 1.0:
            keep = stratified_subset([d['gt_label'] for d in data_list],
                                     [(d['source'], d['img_id']) for d in data_list],
                                     self.label_fraction, self.subset_seed)
            data_list = [data_list[i] for i in keep]
        print_log(f'VOCLocalizationDataset: {len(data_list)}/{total} images (label_fraction='
                  f'{self.label_fraction:g}, subset_seed={self.subset_seed}) from '
                  + ', '.join(f'{r}:{s}' for r, s in self.sources), logger='current')
        return data_list

    def get_cat_ids(self, idx: int) -> List[int]:
        return [int(self.get_data_info(idx)['gt_label'])]

    def extra_repr(self) -> List[str]:
        return [f'Sources: {self.sources}', f'Label fraction: {self.label_fraction:g} (seed {self.subset_seed})']
