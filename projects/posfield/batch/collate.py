"""The multi-view batch, built in the dataloader workers (the place of DINOv2's ``collate_data_and_cast``).

:func:`multiview_collate` turns the per-image outputs of ``PosFieldMultiCrop`` + ``PackInputs`` into one
:class:`~projects.posfield.batch.multiview_batch.MultiViewBatch`: views grouped by size (view-major rows),
canvas boxes (the placement is drawn here), flips, content and position masks, the patch-loss weights and every
index the training step reads, as tensors and Python ints. The step then needs no host synchronisation to find
the masked tokens (docs/design.md, contract 2).

Random draws come from numpy's global state: in a worker process it is seeded by mmengine's ``worker_init_fn``
(seed, rank, worker id); with ``num_workers=0`` it is the main process's, which then draws nothing else. Both
are replayed when a resumed run advances the dataloader over the batches it already trained on
(docs/reliability.md).
"""
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.dataset import default_collate
from mmengine.registry import FUNCTIONS

from .masking import batch_masks
from .multiview_batch import MultiViewBatch
from .placement import DEFAULT_PLACEMENT, PLACEMENT_MODES, place_boxes, sample_placement

DEFAULT_MASKING = dict(mask_prob=0.5, ratio_range=(0.1, 0.5), content_ratio=0.5, content_mode='block',
                       pos_mode='cross', mask_unit='image', min_num_patches=4, aspect_range=(0.3, 1 / 0.3))
_WHERE = 'train_dataloader.collate_fn'


def check_collate_options(placement: Optional[dict] = None, masking: Optional[dict] = None,
                          patch_size: Optional[int] = None) -> Tuple[dict, dict]:
    """The placement and masking options merged over their defaults, with clear errors for bad ones."""
    placement = dict(DEFAULT_PLACEMENT if placement is None else placement)
    if placement.get('mode', 'beta') not in PLACEMENT_MODES:
        raise ValueError(f"{_WHERE}.placement.mode must be one of {PLACEMENT_MODES}, got {placement.get('mode')!r}")
    unknown = sorted(set(masking or {}) - set(DEFAULT_MASKING))
    if unknown:
        raise ValueError(f'{_WHERE}.masking has unknown keys {unknown}; expected some of {sorted(DEFAULT_MASKING)}')
    if patch_size is None:
        raise ValueError(f'{_WHERE}.patch_size is unset: give the backbone\'s patch size (the mask grid)')
    if not isinstance(patch_size, int) or patch_size < 1:
        raise ValueError(f'{_WHERE}.patch_size must be a positive int, got {patch_size!r}')
    return placement, {**DEFAULT_MASKING, **(masking or {})}


def _group_by_size(views: Sequence[torch.Tensor]) -> List[List[int]]:
    """Consecutive views of one resolution form one group (one backbone pass)."""
    groups: List[List[int]] = []
    for i, view in enumerate(views):
        if groups and views[groups[-1][0]].shape[-2:] == view.shape[-2:]:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def _canvas_boxes(rng, placement: dict, crop_aligned: bool, crop_boxes, flips, source_hw):
    if not crop_aligned:  # ablation: ordinary per-view positions, every view spans the whole canvas
        return crop_boxes.new_tensor([0., 0., 1., 1.]).expand_as(crop_boxes), torch.zeros_like(flips)
    placements = torch.tensor(
        np.stack([sample_placement(rng, **placement, img_wh=(float(w), float(h))).as_array()
                  for h, w in source_hw.tolist()]))
    return place_boxes(crop_boxes, source_hw[:, None], placements[:, None]), flips


def build_multiview_batch(views: Sequence[torch.Tensor], samples, rng: np.random.Generator, *,
                          placement: dict, masking: dict, patch_size: int, crop_aligned: bool = True,
                          num_global_views: Optional[int] = None) -> MultiViewBatch:
    """Group the (not yet normalised) views by size and add canvas boxes, flips, masks, weights and indices.

    ``views``: V ``(B, 3, H, W)`` view batches; ``samples``: data samples with ``crop_boxes`` (V, 4),
    ``view_flips`` (V,) and ``source_hw`` (2,). ``placement`` / ``masking`` as returned by
    :func:`check_collate_options`.
    """
    batch = views[0].shape[0]
    for key in ('crop_boxes', 'view_flips', 'source_hw'):
        if samples is None or not all(key in s for s in samples):
            raise ValueError(f"every data sample needs {key!r} (PosFieldMultiCrop output, listed in PackInputs' "
                             f'algorithm_keys)')
    crop_boxes = torch.as_tensor(np.stack([np.asarray(s.crop_boxes) for s in samples]), dtype=torch.float32)
    flips = torch.as_tensor(np.stack([np.asarray(s.view_flips) for s in samples]), dtype=torch.bool)
    source_hw = torch.as_tensor(np.stack([np.asarray(s.source_hw) for s in samples]), dtype=torch.float32)
    if crop_boxes.shape[:2] != (batch, len(views)):
        raise ValueError(f'{len(views)} view batches of {batch} images but crop_boxes has shape '
                         f'{tuple(crop_boxes.shape)}')
    boxes, flips = _canvas_boxes(rng, placement, crop_aligned, crop_boxes, flips, source_hw)
    groups = _group_by_size(views)
    n_global = num_global_views or len(groups[0])
    if groups[0][:n_global] != list(range(n_global)) or len(groups[0]) != n_global:
        raise ValueError(f'the first {n_global} views (the masked ones) must be the global views of one size, '
                         f'got view sizes {[tuple(v.shape[-2:]) for v in views]}')

    def view_major(t: torch.Tensor, idx: List[int]) -> torch.Tensor:  # (B, V, ...) -> (len(idx) * B, ...)
        return t[:, idx].transpose(0, 1).flatten(0, 1).contiguous()

    size_h, size_w = views[0].shape[-2:]
    if size_h % patch_size or size_w % patch_size:
        raise ValueError(f'global view size {size_w}x{size_h} is not a multiple of {_WHERE}.patch_size='
                         f'{patch_size}')
    h, w = size_h // patch_size, size_w // patch_size
    content, position = batch_masks(rng, batch, n_global, (h, w), **masking)
    masked = (content | position).reshape(content.shape[0], -1)
    per_view = np.maximum(masked.sum(1, keepdims=True), 1).astype(np.float32)
    # the same float32 operations as a device-side computation would do: 1 / count / (global views)
    weights = torch.from_numpy(masked.astype(np.float32)) / torch.from_numpy(per_view) / (n_global * batch)
    return MultiViewBatch(
        global_views=torch.cat([views[i] for i in groups[0]]), global_boxes=view_major(boxes, groups[0]),
        global_flips=view_major(flips, groups[0]),
        local_views=[torch.cat([views[i] for i in idx]) for idx in groups[1:]],
        local_boxes=[view_major(boxes, idx) for idx in groups[1:]],
        local_flips=[view_major(flips, idx) for idx in groups[1:]],
        content_masks=torch.from_numpy(content), pos_masks=torch.from_numpy(position), mask_weights=weights,
        n_global=n_global, batch_size=batch)  # the token indices and counts: MultiViewBatch derives them


@FUNCTIONS.register_module()
def multiview_collate(data_batch: Sequence[dict], placement: Optional[dict] = None, crop_aligned: bool = True,
                      masking: Optional[dict] = None, patch_size: Optional[int] = None,
                      num_global_views: Optional[int] = None, seed: Optional[int] = None) -> dict:
    """``default_collate``, then :func:`build_multiview_batch`: ``dict(inputs=MultiViewBatch, data_samples)``.

    Set as ``train_dataloader.collate_fn=dict(type='multiview_collate', patch_size=..., ...)``.

    Args:
        placement: kwargs of :func:`sample_placement` (``mode`` 'beta' | 'uniform' | 'const', ``beta``,
            ``scale_range``); default Beta(2, 5).
        crop_aligned: False (ablation "position masking only"): every view's box is the whole canvas
            ``(0, 0, 1, 1)``, unflipped, i.e. ordinary per-view positions sampled from the field (no placement).
        masking: kwargs of :func:`batch_masks` merged over :data:`DEFAULT_MASKING` (``mask_prob``,
            ``ratio_range``, ``content_ratio``, ``content_mode``, ``pos_mode``, ``mask_unit``, ...).
        patch_size: the backbone's patch size (the mask grid).
        num_global_views: default: the leading views that share the first view's size.
        seed: a fixed random stream for this batch (tests); by default numpy's global state.
    """
    placement, masking = check_collate_options(placement, masking, patch_size)
    data = default_collate(data_batch)
    views, samples = data['inputs'], data['data_samples']
    if not isinstance(views, (list, tuple)) or len(views) < 2:
        raise ValueError(f'{_WHERE}: multiview_collate expects >= 2 views per image (PosFieldMultiCrop then '
                         'PackInputs)')
    rng = np.random.default_rng(seed if seed is not None else np.random.randint(2**31))
    batch = build_multiview_batch(views, samples, rng, placement=placement, masking=masking, patch_size=patch_size,
                                  crop_aligned=crop_aligned, num_global_views=num_global_views)
    return dict(inputs=batch, data_samples=samples)
