"""The multi-view batch of a pre-training step, built in the dataloader workers: the views grouped by size, each
image's canvas placement, the content and position masks and the indices the step selects tokens with.

Importing this package registers ``multiview_collate`` (``train_dataloader.collate_fn``) in mmengine's
``FUNCTIONS``.
"""
from .collate import DEFAULT_MASKING, build_multiview_batch, check_collate_options, multiview_collate
from .masking import MASK_MODES, MASK_UNITS, batch_masks, block_mask, cross_mask, make_mask, random_mask
from .multiview_batch import MultiViewBatch
from .placement import (
           DEFAULT_BETA,
           DEFAULT_PLACEMENT,
           PLACEMENT_MODES,
           Placement,
           mean_placement,
           place_boxes,
           sample_placement,
)

__all__ = ['DEFAULT_MASKING', 'build_multiview_batch', 'check_collate_options', 'multiview_collate', 'MASK_MODES',
           'MASK_UNITS', 'batch_masks', 'block_mask', 'cross_mask', 'make_mask', 'random_mask', 'MultiViewBatch',
           'DEFAULT_BETA', 'DEFAULT_PLACEMENT', 'PLACEMENT_MODES', 'Placement', 'mean_placement', 'place_boxes',
           'sample_placement']
