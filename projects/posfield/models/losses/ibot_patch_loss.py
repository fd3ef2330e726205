"""iBOT's masked-patch distillation loss, used for both masked content and masked position."""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.registry import MODELS

from .centering import TeacherCentering


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

    def forward(self, student_logits: torch.Tensor, targets: torch.Tensor,
                weights: Optional[torch.Tensor] = None) -> torch.Tensor:
        if student_logits.shape[0] == 0:
            return student_logits.float().sum() * 0.0
        log_p = F.log_softmax(student_logits.float() / self.student_temp, dim=-1)
        ce = torch.sum(-targets * log_p, dim=-1)
        if weights is None:
            return ce.mean()
        return (ce * weights.float()).sum()
