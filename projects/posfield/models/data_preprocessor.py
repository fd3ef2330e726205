"""The data preprocessor that moves the multi-view batch to the device and normalises it.

The batch itself (:class:`~projects.posfield.batch.multiview_batch.MultiViewBatch`) is built in the dataloader
workers by :func:`~projects.posfield.batch.collate.multiview_collate` (the place of DINOv2's
``collate_data_and_cast``).
"""
import dataclasses
from typing import Optional, Sequence

import torch
from mmpretrain.models.utils import SelfSupDataPreprocessor
from mmpretrain.registry import MODELS

from ..batch.multiview_batch import MultiViewBatch

MOVED_TO_COLLATE = ('placement', 'crop_aligned', 'masking', 'patch_size', 'num_global_views', 'seed')


@MODELS.register_module()
class MultiViewDataPreprocessor(SelfSupDataPreprocessor):
    """Moves a :class:`MultiViewBatch` to the device, casts its views to float and normalises them.

    The batch (placement, masks, indices) is built in the dataloader workers by ``multiview_collate``
    (``train_dataloader.collate_fn``); its options (``placement``, ``crop_aligned``, ``masking``, ...) are
    options of that function.

    Args:
        mean, std, to_rgb: as mmpretrain's :class:`SelfSupDataPreprocessor`.
        photometric: a module config (e.g. ``dict(type='MultiCropPhotometric')``, DINO's recipe) that augments the
            views on the device before normalisation, in training only; for ``PosFieldMultiCrop(photometric=False)``.
    """

    def __init__(self, mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None,
                 to_rgb: bool = False, photometric: Optional[dict] = None, **kwargs):
        moved = sorted(set(kwargs) & set(MOVED_TO_COLLATE))
        if moved:
            raise ValueError(f'model.data_preprocessor got {moved}: these are options of the batch collate function '
                             f"now; set them under train_dataloader.collate_fn (type='multiview_collate')")
        super().__init__(mean=mean, std=std, to_rgb=to_rgb, **kwargs)
        self.photometric = MODELS.build(photometric) if photometric is not None else None

    def forward(self, data: dict, training: bool = False) -> dict:
        batch = data.get('inputs') if isinstance(data, dict) else None
        if not isinstance(batch, MultiViewBatch):
            raise ValueError(f'MultiViewDataPreprocessor expects a MultiViewBatch as inputs, got '
                             f"{type(batch).__name__}: set train_dataloader.collate_fn=dict(type='multiview_collate',"
                             ' patch_size=...)')
        batch = batch.to(self._device, non_blocking=True)
        if training and self.photometric is not None:  # on the device, on the 0-255 views before normalisation
            batch = self.augment_views(batch)
        return dict(inputs=self.normalise_views(batch), data_samples=data.get('data_samples'))

    def augment_views(self, batch: MultiViewBatch) -> MultiViewBatch:
        """The photometric augmentation of every view, in the views' original order (globals, then locals)."""
        size = batch.batch_size
        views = self.photometric([*batch.global_views.split(size), *(v for group in batch.local_views
                                                                      for v in group.split(size))], batch.n_global)
        local_views, start = [], batch.n_global
        for group in batch.local_views:
            stop = start + group.shape[0] // size
            local_views.append(torch.cat(views[start:stop]))
            start = stop
        return dataclasses.replace(batch, global_views=torch.cat(views[:batch.n_global]), local_views=local_views)

    def normalise(self, views: torch.Tensor) -> torch.Tensor:
        """uint8 ``(N, 3, H, W)`` -> float, channels converted and normalised (mmpretrain's order of operations)."""
        if self._channel_conversion:
            views = views.flip(1)  # the same as [2, 1, 0] for 3 channels, without an index tensor
        views = views.float()
        if self._enable_normalize:
            views = (views - self.mean) / self.std
        return views

    def normalise_views(self, batch: MultiViewBatch) -> MultiViewBatch:
        """The one place where the normalised views of the step are produced."""
        return dataclasses.replace(batch, global_views=self.normalise(batch.global_views),
                                   local_views=[self.normalise(v) for v in batch.local_views])
