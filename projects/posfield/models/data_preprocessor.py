"""The multi-view batch, built once per step as tensors (the place of DINOv2's ``collate_data_and_cast``)."""
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmpretrain.models.utils import SelfSupDataPreprocessor
from mmpretrain.registry import MODELS

from ..datasets.transforms.masking import batch_masks
from .utils.pos_field import DEFAULT_PLACEMENT, PLACEMENT_MODES, place_boxes, sample_placement

DEFAULT_MASKING = dict(mask_prob=0.5, ratio_range=(0.1, 0.5), content_ratio=0.5, content_mode='block',
                       pos_mode='cross', mask_unit='image', min_num_patches=4, aspect_range=(0.3, 1 / 0.3))


@dataclass
class MultiViewBatch:
    """One step's views of ``batch_size`` images, view-major (row ``v * batch_size + b`` is view ``v`` of
    image ``b``, DINOv2's order).

    ``global_*``: the ``n_global`` masked-prediction views, one tensor; ``local_*``: one tensor per local
    view size. Boxes are canvas boxes ``(x0, y0, x1, y1)``; flips are bool. ``content_masks`` /
    ``pos_masks``: bool ``(n_global * batch_size, h, w)`` on the global views' patch grid.
    ``mask_weights``: ``(n_global * batch_size, h * w)``, DINOv2's patch-loss weight of each masked token,
    ``1 / (masked tokens of its view) / (global views in the batch)`` (0 where unmasked), so a patch loss is
    ``sum(weight * cross-entropy)`` with one normalisation for every content:position split.
    """
    global_views: torch.Tensor
    global_boxes: torch.Tensor
    global_flips: torch.Tensor
    local_views: List[torch.Tensor]
    local_boxes: List[torch.Tensor]
    local_flips: List[torch.Tensor]
    content_masks: torch.Tensor
    pos_masks: torch.Tensor
    mask_weights: torch.Tensor
    n_global: int
    batch_size: int

    @property
    def num_global_views(self) -> int:
        return self.n_global * self.batch_size


@MODELS.register_module()
class MultiViewDataPreprocessor(SelfSupDataPreprocessor):
    """Normalises the views of a ``PosFieldMultiCrop`` batch and builds a :class:`MultiViewBatch`.

    Per batch it draws each image's canvas placement (shared by all its views) and the content / position
    masks of the global views, so ablations of placement and masking are options of this module.

    Args:
        mean, std, to_rgb: as mmpretrain's :class:`SelfSupDataPreprocessor`.
        placement: kwargs of :func:`sample_placement` (``mode`` 'beta' | 'uniform' | 'const', ``beta``,
            ``scale_range``); default Beta(2, 5).
        crop_aligned: False (ablation "position masking only"): every view's box is the whole canvas
            ``(0, 0, 1, 1)``, unflipped, i.e. ordinary per-view positions sampled from the field (no placement).
        masking: kwargs of :func:`batch_masks` merged over :data:`DEFAULT_MASKING` (``mask_prob``,
            ``ratio_range``, ``content_ratio``, ``content_mode``, ``pos_mode``, ``mask_unit``, ...).
        patch_size: the backbone's patch size (the mask grid); :class:`PosFieldSSL` sets it from its
            backbone when None.
        num_global_views: default: the leading views that share the first view's size.
        seed: a fixed random stream (tests); by default each batch draws from numpy's global state, which
            mmengine seeds per rank.
        photometric: a module config (e.g. ``dict(type='MultiCropPhotometric')``, DINO's recipe) that augments the
            views on the device before normalisation, in training only; for ``PosFieldMultiCrop(photometric=False)``.

    The input is mmpretrain's ``PackInputs`` output collated by ``default_collate``: ``inputs`` a list of V
    ``(B, 3, H, W)`` view batches, data samples with ``crop_boxes`` (V, 4), ``view_flips`` (V,) and
    ``source_hw`` (2,).
    """

    def __init__(self, mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None,
                 to_rgb: bool = False, placement: Optional[dict] = None, crop_aligned: bool = True,
                 masking: Optional[dict] = None, patch_size: Optional[int] = None,
                 num_global_views: Optional[int] = None, seed: Optional[int] = None,
                 photometric: Optional[dict] = None, **kwargs):
        super().__init__(mean=mean, std=std, to_rgb=to_rgb, **kwargs)
        self.photometric = MODELS.build(photometric) if photometric is not None else None
        self.placement = dict(DEFAULT_PLACEMENT if placement is None else placement)
        if self.placement.get('mode', 'beta') not in PLACEMENT_MODES:
            raise ValueError(f"data_preprocessor.placement.mode must be one of {PLACEMENT_MODES}, got "
                             f"{self.placement.get('mode')!r}")
        unknown = sorted(set(masking or {}) - set(DEFAULT_MASKING))
        if unknown:
            raise ValueError(f'data_preprocessor.masking has unknown keys {unknown}; expected some of '
                             f'{sorted(DEFAULT_MASKING)}')
        self.masking = {**DEFAULT_MASKING, **(masking or {})}
        self.crop_aligned = crop_aligned
        self.patch_size = patch_size
        self.num_global_views = num_global_views
        self._rng = np.random.default_rng(seed) if seed is not None else None

    def _generator(self) -> np.random.Generator:
        return self._rng if self._rng is not None else np.random.default_rng(np.random.randint(2**31))

    def forward(self, data: dict, training: bool = False) -> dict:
        if training and self.photometric is not None:  # on the device, on the 0-255 views before normalisation
            data = {**data, 'inputs': self.photometric(self.cast_data(data['inputs']), self.num_global_views)}
        data = super().forward(data, training)
        views, samples = data['inputs'], data['data_samples']
        if not isinstance(views, (list, tuple)) or len(views) < 2:
            raise ValueError('MultiViewDataPreprocessor expects a list of >= 2 view batches (PosFieldMultiCrop '
                             'then PackInputs)')
        return dict(inputs=self.build_batch(views, samples), data_samples=samples)

    def build_batch(self, views: Sequence[torch.Tensor], samples) -> MultiViewBatch:
        """Group the normalised views by size and add canvas boxes, flips, masks and patch-loss weights."""
        device = views[0].device
        batch = views[0].shape[0]
        for key in ('crop_boxes', 'view_flips', 'source_hw'):
            if samples is None or not all(key in s for s in samples):
                raise ValueError(f'every data sample needs {key!r} (PosFieldMultiCrop output, listed in '
                                 f"PackInputs' algorithm_keys)")
        crop_boxes = torch.as_tensor(np.stack([np.asarray(s.crop_boxes) for s in samples]), dtype=torch.float32)
        flips = torch.as_tensor(np.stack([np.asarray(s.view_flips) for s in samples]), dtype=torch.bool)
        source_hw = torch.as_tensor(np.stack([np.asarray(s.source_hw) for s in samples]), dtype=torch.float32)
        if crop_boxes.shape[:2] != (batch, len(views)):
            raise ValueError(f'{len(views)} view batches of {batch} images but crop_boxes has shape '
                             f'{tuple(crop_boxes.shape)}')
        rng = self._generator()
        boxes, flips = self._canvas_boxes(rng, crop_boxes, flips, source_hw)
        groups = _group_by_size(views)
        n_global = self.num_global_views or len(groups[0])
        if groups[0][:n_global] != list(range(n_global)) or len(groups[0]) != n_global:
            raise ValueError(f'the first {n_global} views (the masked ones) must be the global views of one size, '
                             f'got view sizes {[tuple(v.shape[-2:]) for v in views]}')

        def view_major(t: torch.Tensor, idx: List[int]) -> torch.Tensor:  # (B, V, ...) -> (len(idx) * B, ...)
            return t[:, idx].transpose(0, 1).flatten(0, 1).to(device)

        g_idx = groups[0]
        h, w = self._grid(views[0])
        content, position = batch_masks(rng, batch, n_global, (h, w), **self.masking)
        content = torch.from_numpy(content).to(device)
        position = torch.from_numpy(position).to(device)
        masked = (content | position).flatten(1)
        per_view = masked.sum(1, keepdim=True).clamp_min(1).float()
        weights = masked.float() / per_view / (n_global * batch)
        return MultiViewBatch(
            global_views=torch.cat([views[i] for i in g_idx]), global_boxes=view_major(boxes, g_idx),
            global_flips=view_major(flips, g_idx),
            local_views=[torch.cat([views[i] for i in idx]) for idx in groups[1:]],
            local_boxes=[view_major(boxes, idx) for idx in groups[1:]],
            local_flips=[view_major(flips, idx) for idx in groups[1:]],
            content_masks=content, pos_masks=position, mask_weights=weights, n_global=n_global, batch_size=batch)

    def _canvas_boxes(self, rng, crop_boxes, flips, source_hw) -> Tuple[torch.Tensor, torch.Tensor]:
        if not self.crop_aligned:  # ablation: ordinary per-view positions, every view spans the whole canvas
            return crop_boxes.new_tensor([0., 0., 1., 1.]).expand_as(crop_boxes), torch.zeros_like(flips)
        placements = torch.tensor(
            np.stack([sample_placement(rng, **self.placement, img_wh=(float(w), float(h))).as_array()
                      for h, w in source_hw.tolist()]))
        return place_boxes(crop_boxes, source_hw[:, None], placements[:, None]), flips

    def _grid(self, view: torch.Tensor) -> Tuple[int, int]:
        if self.patch_size is None:
            raise ValueError('MultiViewDataPreprocessor.patch_size is unset: give it, or build it through '
                             'PosFieldSSL, which takes it from the backbone')
        size_h, size_w = view.shape[-2:]
        if size_h % self.patch_size or size_w % self.patch_size:
            raise ValueError(f'global view size {size_w}x{size_h} is not a multiple of patch_size={self.patch_size}')
        return size_h // self.patch_size, size_w // self.patch_size


def _group_by_size(views: Sequence[torch.Tensor]) -> List[List[int]]:
    """Consecutive views of one resolution form one group (one backbone pass)."""
    groups: List[List[int]] = []
    for i, view in enumerate(views):
        if groups and views[groups[-1][0]].shape[-2:] == view.shape[-2:]:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups
