"""A random crop that always keeps the whole target box (training augmentation for one-box localisation).

mmcv's ``Resize`` and ``RandomFlip`` (registered in mmpretrain) already carry ``gt_bboxes``;
mmpretrain's ``RandomResizedCrop`` does not and could cut the object away, hence this transform.
"""
from __future__ import annotations

import numpy as np
from mmcv.transforms import BaseTransform
from mmpretrain.registry import TRANSFORMS


@TRANSFORMS.register_module()
class BoxPreservingRandomCrop(BaseTransform):
    """Crop a random window that contains every box of ``gt_bboxes``; the boxes are shifted with it.

    The window side is uniform in ``[max(min_scale * side, boxes' extent), side]`` per axis, its position
    uniform among those keeping the boxes inside. ``ori_gt_bboxes`` is left alone (it describes the
    original image), so use this in training pipelines only.

    Required keys: ``img``, ``gt_bboxes`` (N, 4). Modified keys: ``img``, ``img_shape``, ``gt_bboxes``.

    Args:
        min_scale (float): smallest window side as a share of the image side. Defaults to 0.5.
        prob (float): probability of cropping at all. Defaults to 0.5.
    """

    def __init__(self, min_scale: float = 0.5, prob: float = 0.5) -> None:
        if not 0.0 < min_scale <= 1.0:
            raise ValueError(f'BoxPreservingRandomCrop: min_scale must be in (0, 1], got {min_scale}')
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f'BoxPreservingRandomCrop: prob must be in [0, 1], got {prob}')
        self.min_scale = min_scale
        self.prob = prob

    def transform(self, results: dict) -> dict:
        if 'gt_bboxes' not in results:
            raise KeyError('BoxPreservingRandomCrop needs `gt_bboxes` in the results (VOCLocalizationDataset '
                           'writes it); put it after LoadImageFromFile')
        if np.random.rand() >= self.prob:
            return results
        img = results['img']
        h, w = img.shape[:2]
        boxes = np.asarray(results['gt_bboxes'], dtype=np.float32).reshape(-1, 4)
        # integer pixel window [x0, x0 + cw) x [y0, y0 + ch) that contains every box
        bx0 = int(np.floor(boxes[:, 0].min())) if len(boxes) else w
        by0 = int(np.floor(boxes[:, 1].min())) if len(boxes) else h
        bx1 = int(np.ceil(boxes[:, 2].max())) if len(boxes) else 0
        by1 = int(np.ceil(boxes[:, 3].max())) if len(boxes) else 0
        x0, cw = self._window(w, bx0, bx1)
        y0, ch = self._window(h, by0, by1)
        results['img'] = img[y0:y0 + ch, x0:x0 + cw]
        results['img_shape'] = results['img'].shape[:2]
        results['gt_bboxes'] = (boxes - np.array([x0, y0, x0, y0], dtype=np.float32)).astype(np.float32)
        return results

    def _window(self, side: int, lo: int, hi: int):
        lo, hi = max(0, min(lo, side)), max(0, min(hi, side))
        need = max(hi - lo, 0)
        smallest = min(side, max(need, int(np.ceil(self.min_scale * side)), 1))
        size = int(np.random.randint(smallest, side + 1))
        # start so that [start, start + size) covers [lo, hi) and stays in the image
        first, last = max(0, hi - size), min(lo, side - size)
        start = int(np.random.randint(first, last + 1)) if last >= first else max(0, min(lo, side - size))
        return start, size

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(min_scale={self.min_scale}, prob={self.prob})'
