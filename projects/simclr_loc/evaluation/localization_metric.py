"""Localisation accuracy for classify-and-localise models AND for mmdet detectors, with one definition.

Every ground-truth (GT) object counts once. Per object the metric records

* its **best IoU**: the largest IoU between the object's box and a predicted box. Which predicted boxes
  compete is set by ``class_aware``:

  - ``class_aware=False`` (default): boxes of **any** predicted class. Localisation is then scored
    independently of classification, which top-k measures separately; this is what makes the numbers of
    the one-box classify-and-localise model and of a detector comparable.
  - ``class_aware=True``: only boxes whose predicted label equals the object's label (a wrongly classified
    box gets no localisation credit; for the one-box model: IoU counts only if its top-1 label is right,
    i.e. ImageNet-style "top-1 localisation").

  An object with no competing box has IoU 0.
* its **class rank**: how many classes are ranked at or above the GT class, other than the GT class itself,
  where ties count against the prediction (pessimistic): ``rank = #{c: s_c > s_gt} + #{c != gt: s_c == s_gt}``.
  The object is correct at top-k when ``rank < k``; a model scoring every class the same is never right
  unless k reaches the number of classes.

  - one-box model (``pred_score``, shape ``(C,)``): ``s_c`` is the class score.
  - detector (``pred_instances``): ``s_c`` is the highest score of a predicted box of class ``c`` whose IoU
    with the object is at least ``cls_iou_thr``; classes without such a box are unranked. If the GT class
    has no such box the object is wrong at every k.

Reported (all in percent, over all GT objects of the evaluated set; prefix ``loc/``):

* ``top{k}`` for k in ``topk``: share of objects whose class is within the top k;
* ``mean_iou``: mean best IoU (x 100);
* ``acc_iou{100 t}`` for t in ``iou_thrs`` (``acc_iou50``, ``acc_iou70``): share of objects whose best IoU
  reaches t (IoU >= t);
* ``num_objects``: how many objects were scored (a count, not a percentage).

Boxes are ``(x1, y1, x2, y2)`` in continuous pixel coordinates (no +1), and the prediction and the GT of a
sample must be in the same image frame (IoU is unchanged by resizing both, not by resizing one):

* one-box model: ``pred_box`` (original image pixels, written by ``ClsLocHead.predict``) against
  ``ori_gt_bboxes`` (``(N, 4)``, original pixels, written by ``VOCLocalizationDataset``) with labels
  ``gt_label`` (``(N,)``; this project's dataset gives one object, the image's largest).
* detector: ``pred_instances.bboxes/scores/labels`` (mmdet rescales them to the original image) against
  ``gt_instances.bboxes/labels``. mmdet's standard test pipelines load annotations *after* ``Resize``, so
  these are in original pixels too. ``ignored_instances`` (VOC "difficult") are not scored.

Samples may be dicts (what mmengine's ``Evaluator`` passes) or data-element objects. Use it in an mmdet
config as ``dict(type='mmpretrain.LocalizationMetric')`` (with ``custom_imports`` of ``projects.simclr_loc``).
"""
from __future__ import annotations

import math
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from mmpretrain.registry import METRICS

UNRANKED = np.iinfo(np.int64).max


def _get(obj: Any, key: str, default=None):
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _np(value, dtype, shape_tail: Tuple[int, ...] = ()) -> np.ndarray:
    if value is None:
        return np.zeros((0,) + shape_tail, dtype=dtype)
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value, dtype=dtype)
    if shape_tail:
        arr = arr.reshape((-1,) + shape_tail)
    else:
        arr = arr.reshape(-1)
    return arr


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix between boxes ``a`` (N, 4) and ``b`` (M, 4), xyxy continuous coordinates."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def pessimistic_rank(scores: np.ndarray, gt: int, valid: Optional[np.ndarray] = None) -> int:
    """Number of (valid) classes ranked at or above class ``gt``, ties counted against ``gt``."""
    if valid is None:
        valid = np.ones(len(scores), dtype=bool)
    if gt < 0 or gt >= len(scores) or not valid[gt]:
        return UNRANKED
    s = scores[gt]
    others = valid.copy()
    others[gt] = False
    return int(np.sum(valid & (scores > s)) + np.sum(others & (scores == s)))


@METRICS.register_module()
class LocalizationMetric(BaseMetric):
    """Top-k classification, mean IoU and Acc@IoU per ground-truth object (see the module docstring).

    Args:
        topk (Sequence[int]): k of the top-k accuracies. Defaults to (1, 3).
        iou_thrs (Sequence[float]): IoU thresholds of the localisation accuracies. Defaults to (0.5, 0.7).
        class_aware (bool): only boxes of the object's class compete for its best IoU. Defaults to False
            (any class).
        score_thr (float): detector boxes scoring below this are ignored. Defaults to 0 (keep all the
            detector returned; mmdet already drops boxes under its test_cfg score_thr).
        cls_iou_thr (float): detector boxes must overlap an object by this IoU to vote for its class.
            Defaults to 0.5.
        collect_device, prefix: as in :class:`mmengine.evaluator.BaseMetric` (prefix defaults to ``loc``).
    """
    default_prefix = 'loc'

    def __init__(self, topk: Sequence[int] = (1, 3), iou_thrs: Sequence[float] = (0.5, 0.7),
                 class_aware: bool = False, score_thr: float = 0.0, cls_iou_thr: float = 0.5,
                 collect_device: str = 'cpu', prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        topk = tuple(int(k) for k in ([topk] if isinstance(topk, int) else topk))
        if not topk or min(topk) < 1:
            raise ValueError(f'LocalizationMetric: topk must be positive integers, got {topk}')
        iou_thrs = tuple(float(t) for t in ([iou_thrs] if isinstance(iou_thrs, (int, float)) else iou_thrs))
        if any(not 0.0 < t <= 1.0 for t in iou_thrs):
            raise ValueError(f'LocalizationMetric: iou_thrs must lie in (0, 1], got {iou_thrs}')
        self.topk = topk
        self.iou_thrs = iou_thrs
        self.class_aware = bool(class_aware)
        self.score_thr = float(score_thr)
        self.cls_iou_thr = float(cls_iou_thr)

    # ------------------------------------------------------------------ per sample
    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        # one entry per sample: mmengine truncates the collected results to the dataset size
        for sample in data_samples:
            self.results.append(self.score_sample(sample))

    def score_sample(self, sample: Any) -> List[Tuple[float, int]]:
        """``(best IoU, class rank)`` of each GT object of one sample (either format)."""
        if _get(sample, 'pred_instances') is not None:
            return self._score_detector(sample)
        if _get(sample, 'pred_box') is not None:
            return self._score_one_box(sample)
        keys = sorted(sample.keys()) if isinstance(sample, dict) else sorted(getattr(sample, 'keys', list)())
        raise KeyError('LocalizationMetric: a sample has neither `pred_instances` (mmdet detector output) nor '
                       f'`pred_box` (ClsLocModel output); its keys are {keys}')

    def _score_one_box(self, sample: Any) -> List[Tuple[float, int]]:
        gt_boxes = _get(sample, 'ori_gt_bboxes')
        if gt_boxes is None:
            raise KeyError('LocalizationMetric: a ClsLocModel sample has no `ori_gt_bboxes` (GT boxes in original '
                           "image pixels); pack it with PackInputs(algorithm_keys=['gt_bboxes', 'ori_gt_bboxes'])")
        gt_boxes = _np(gt_boxes, np.float64, (4,))
        gt_labels = _np(_get(sample, 'gt_label'), np.int64)
        if len(gt_labels) != len(gt_boxes):
            raise ValueError(f'LocalizationMetric: sample {_get(sample, "img_path", "?")} has {len(gt_boxes)} GT '
                             f'boxes but {len(gt_labels)} GT labels')
        pred_box = _np(_get(sample, 'pred_box'), np.float64, (4,))
        scores = _np(_get(sample, 'pred_score'), np.float64)
        if len(scores) == 0:
            raise KeyError('LocalizationMetric: a ClsLocModel sample has `pred_box` but no `pred_score`')
        pred_label = _get(sample, 'pred_label')
        pred_label = int(_np(pred_label, np.int64)[0]) if pred_label is not None else int(np.argmax(scores))
        ious = box_iou(gt_boxes, pred_box[:1])[:, 0] if len(pred_box) else np.zeros(len(gt_boxes))
        out = []
        for iou, label in zip(ious, gt_labels):
            if self.class_aware and pred_label != label:
                iou = 0.0
            out.append((float(iou), pessimistic_rank(scores, int(label))))
        return out

    def _score_detector(self, sample: Any) -> List[Tuple[float, int]]:
        gt = _get(sample, 'gt_instances')
        if gt is None:
            raise KeyError('LocalizationMetric: a detector sample has no `gt_instances`; keep '
                           "LoadAnnotations(with_bbox=True) in the test pipeline (after Resize, as mmdet's do)")
        gt_boxes = _np(_get(gt, 'bboxes'), np.float64, (4,))
        gt_labels = _np(_get(gt, 'labels'), np.int64)
        pred = _get(sample, 'pred_instances')
        boxes = _np(_get(pred, 'bboxes'), np.float64, (4,))
        scores = _np(_get(pred, 'scores'), np.float64)
        labels = _np(_get(pred, 'labels'), np.int64)
        if not len(boxes) == len(scores) == len(labels):
            raise ValueError(f'LocalizationMetric: pred_instances of {_get(sample, "img_path", "?")} have '
                             f'{len(boxes)} boxes, {len(scores)} scores and {len(labels)} labels')
        keep = scores >= self.score_thr
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        ious = box_iou(gt_boxes, boxes)  # (N, M)
        num_classes = int(max(labels.max(initial=-1), gt_labels.max(initial=-1))) + 1
        out = []
        for j, label in enumerate(gt_labels):
            competing = labels == label if self.class_aware else np.ones(len(labels), dtype=bool)
            best = float(ious[j][competing].max()) if competing.any() else 0.0
            votes = ious[j] >= self.cls_iou_thr
            class_scores = np.full(num_classes, -np.inf)
            valid = np.zeros(num_classes, dtype=bool)
            for lab, sc in zip(labels[votes], scores[votes]):
                valid[lab] = True
                class_scores[lab] = max(class_scores[lab], sc)
            out.append((best, pessimistic_rank(class_scores, int(label), valid)))
        return out

    # ------------------------------------------------------------------ aggregate
    def compute_metrics(self, results: List[List[Tuple[float, int]]]) -> dict:
        results = [obj for sample in results for obj in sample]
        n = len(results)
        metrics = {}
        if n == 0:
            print_log('LocalizationMetric: no ground-truth object was scored; all metrics are NaN',
                      logger='current', level=30)
        ious = np.array([r[0] for r in results], dtype=np.float64)
        ranks = np.array([r[1] for r in results], dtype=np.int64)
        for k in self.topk:
            metrics[f'top{k}'] = 100.0 * float(np.mean(ranks < k)) if n else math.nan
        metrics['mean_iou'] = 100.0 * float(ious.mean()) if n else math.nan
        for t in self.iou_thrs:
            metrics[f'acc_iou{round(t * 100):d}'] = 100.0 * float(np.mean(ious >= t)) if n else math.nan
        metrics['num_objects'] = n
        return metrics
