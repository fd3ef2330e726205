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

    ``student_logits`` / ``teacher_logits``: ``(M, K)`` for the M masked tokens. ``weights`` ``(M,)``:
    DINOv2's ``masks_weight``, ``1 / (masked tokens of that token's view)``, so each view counts once
    whatever its mask ratio; the loss is ``sum(w * ce) / sum(w)`` (the mean over masked views).
    Without weights it is the mean over tokens. ``M == 0`` gives a zero that keeps the graph.
    The centre is updated separately (:meth:`update_center`), once per step, by the owning head.
    """

    def __init__(self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9,
                 centering: str = 'centering'):
        super().__init__()
        self.student_temp = student_temp
        self.centering = TeacherCentering(out_dim, center_momentum, centering)

    @property
    def center(self) -> torch.Tensor:
        return self.centering.center

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, teacher_temp: float,
                weights: Optional[torch.Tensor] = None) -> torch.Tensor:
        if student_logits.shape[0] == 0:
            return student_logits.float().sum() * 0.0
        targets = self.centering.targets(teacher_logits, teacher_temp)
        log_p = F.log_softmax(student_logits.float() / self.student_temp, dim=-1)
        ce = torch.sum(-targets * log_p, dim=-1)
        if weights is None:
            return ce.mean()
        weights = weights.float()
        return (ce * weights).sum() / weights.sum().clamp_min(1e-12)

    def update_center(self, teacher_logits: torch.Tensor) -> None:
        self.centering.update(teacher_logits)
