"""iBOT's masked-patch distillation loss, used for both masked content and masked position."""
from typing import Optional

import torch
import torch.nn as nn
from mmpretrain.registry import MODELS

from .centering import TeacherCentering
from .soft_cross_entropy import soft_cross_entropy


@MODELS.register_module()
class iBOTPatchLoss(nn.Module):  # noqa: N801 (the method's name)
    """Cross-entropy between teacher targets and student predictions of masked tokens.

    ``student_logits`` / ``targets``: ``(M, K)`` for the M masked tokens. ``weights`` ``(M,)``: DINOv2's
    ``masks_weight / number of global views`` (:class:`MultiViewBatch.mask_weights`); the loss is
    ``sum(w * ce)``, so every masked view counts once and the normalisation (the number of global views in
    the batch) does not depend on how many views this branch masked. Without weights it is the mean over
    tokens. ``M == 0`` gives a zero that keeps the graph.
    """

    def __init__(self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9,
                 centering: str = 'centering'):
        super().__init__()
        self.student_temp = student_temp
        self.centering = TeacherCentering(out_dim, center_momentum, centering)

    @property
    def center(self) -> torch.Tensor:
        return self.centering.center

    @torch.no_grad()
    def teacher_targets(self, teacher_logits: torch.Tensor, teacher_temp: float) -> torch.Tensor:
        """Targets of all masked tokens of the step (every rank calls this, with or without rows: the
        collectives of Sinkhorn-Knopp and of the centre update must run everywhere), then the centre update."""
        targets = self.centering.targets(teacher_logits, teacher_temp)
        self.centering.update(teacher_logits)
        return targets

    @staticmethod
    def reduce(ce: torch.Tensor, weights: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The loss from the per-token cross-entropies ``(M,)``: ``sum(w * ce)``, or their mean without weights."""
        if ce.shape[0] == 0:
            return ce.sum() * 0.0
        if weights is None:
            return ce.mean()
        return (ce * weights.to(ce.dtype)).sum()

    def forward(self, student_logits: torch.Tensor, targets: torch.Tensor,
                weights: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.reduce(soft_cross_entropy(student_logits, targets, self.student_temp), weights)
