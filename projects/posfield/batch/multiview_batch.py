"""The multi-view batch of one pre-training step: what the collate function builds in the dataloader workers and
the model reads (docs/design.md, contract 2)."""
import dataclasses
from dataclasses import dataclass
from typing import List, Optional

import torch


@dataclass
class MultiViewBatch:
    """One step's views of ``batch_size`` images, view-major (row ``v * batch_size + b`` is view ``v`` of
    image ``b``, DINOv2's order).

    ``global_*``: the ``n_global`` masked-prediction views, one tensor; ``local_*``: one tensor per local
    view size. Boxes are canvas boxes ``(x0, y0, x1, y1)``; flips are bool. ``content_masks`` /
    ``pos_masks``: bool ``(n_global * batch_size, h, w)`` on the global views' patch grid, disjoint.
    ``mask_weights``: ``(n_global * batch_size, h * w)``, DINOv2's patch-loss weight of each masked token,
    ``1 / (masked tokens of its view) / (global views in the batch)`` (0 where unmasked), so a patch loss is
    ``sum(weight * cross-entropy)`` with one normalisation for every content:position split.

    Indices, so that the step selects tokens without a host synchronisation (flat patch index
    ``view * h * w + patch``):

    * ``kept_rows`` long ``(n_content + n_pos,)``: the masked patches in row-major order (view, then patch),
      the patches whose last-layer output a loss reads (the backbone's ``keep_patches``);
    * ``masked_in_kept`` long: the position in ``kept_rows`` of each masked patch, content-masked ones first
      then position-masked ones (each group row-major): the head's patch rows;
    * ``masked_weights``: ``mask_weights`` of those rows, in that order;
    * ``n_content``, ``n_pos`` (Python ints): how many rows of each kind;
    * ``max_kept_per_view`` (Python int): the most masked patches of one global view.
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
    kept_rows: Optional[torch.Tensor] = None
    masked_in_kept: Optional[torch.Tensor] = None
    masked_weights: Optional[torch.Tensor] = None
    n_content: Optional[int] = None
    n_pos: Optional[int] = None
    max_kept_per_view: Optional[int] = None

    def __post_init__(self):
        # Derived once, where the batch is built: in the dataloader worker (multiview_collate), on CPU tensors, so
        # these reads are not device reads; a batch moved with .to() carries them along.
        if self.kept_rows is None:
            content, pos = self.content_masks.flatten(1), self.pos_masks.flatten(1)
            masked = content | pos
            self.kept_rows = masked.flatten().nonzero().flatten()
            slot = torch.full((masked.numel(),), -1, dtype=torch.long, device=masked.device)
            slot[self.kept_rows] = torch.arange(self.kept_rows.numel(), device=masked.device)
            self.masked_in_kept = torch.cat([slot[content.flatten()], slot[pos.flatten()]])
            self.masked_weights = torch.cat([self.mask_weights[content], self.mask_weights[pos]])
            self.n_content, self.n_pos = int(content.sum()), int(pos.sum())
            self.max_kept_per_view = int(masked.sum(1).max()) if masked.numel() else 0

    @property
    def num_global_views(self) -> int:
        return self.n_global * self.batch_size

    def _map(self, fn) -> 'MultiViewBatch':
        out = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, torch.Tensor):
                value = fn(value)
            elif isinstance(value, list):
                value = [fn(v) for v in value]
            out[field.name] = value
        return MultiViewBatch(**out)

    def to(self, device, non_blocking: bool = False) -> 'MultiViewBatch':
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> 'MultiViewBatch':
        """Called by the DataLoader's pin-memory thread (``pin_memory=True``)."""
        return self._map(lambda t: t.pin_memory())
