"""L_image: DINO distillation of the [CLS] token."""
from typing import Sequence

import torch
from mmpretrain.registry import MODELS

from .distillation_head import DistillationHead, LossRows


@MODELS.register_module()
class DINOClsHead(DistillationHead):
    """``loss_image`` from a :class:`DINOClsLoss`."""

    def loss_rows(self, targets: Sequence[torch.Tensor], n_views: int) -> LossRows:
        """The student's [CLS] rows: ``n_views`` crops of B images, crop after crop, global crops first (as the
        teacher's); ``targets``: the ``(B, K)`` targets of each global crop. A row's target is the sum of the
        other crops' targets (:meth:`DINOClsLoss.row_targets`)."""
        targets = list(targets)
        n_targets = len(targets)
        return LossRows(self.loss_module.row_targets(targets, n_views), self.loss_module.student_temp,
                        lambda ce: dict(loss_image=self.loss_module.reduce(ce, n_views, n_targets)))
