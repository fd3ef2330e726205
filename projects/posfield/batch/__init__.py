"""The multi-view batch of a pre-training step, built in the dataloader workers: the views grouped by size, each
image's canvas placement, the content and position masks and the indices the step selects tokens with.

Modules: ``multiview_batch`` (:class:`MultiViewBatch`), ``collate`` (``multiview_collate``), ``masking``,
``placement``. Importing this package registers ``multiview_collate`` (``train_dataloader.collate_fn``) in
mmengine's ``FUNCTIONS``.
"""
from . import collate, masking, multiview_batch, placement  # noqa: F401  (registration)
