"""DINO's [CLS] self-distillation loss (L_image)."""
from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.registry import MODELS

from .centering import TeacherCentering


@MODELS.register_module()
class DINOClsLoss(nn.Module):
    """Cross-entropy between teacher targets of each global crop and student predictions of every other crop.

    :meth:`teacher_targets` turns the teacher's logits into targets (then updates the centre, as DINO does);
    ``forward`` takes one ``(B, K)`` student logit tensor per crop, global crops first (same order as the
    teacher's), and one ``(B, K)`` target tensor per global crop. Pairs of the same view are skipped; the loss
    is the mean over the remaining pairs.
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
        targets = self.centering.targets(teacher_logits, teacher_temp)
        self.centering.update(teacher_logits)
        return targets

    def forward(self, student_logits: List[torch.Tensor], targets: List[torch.Tensor]) -> torch.Tensor:
        if len(student_logits) < 2 or not targets:
            raise ValueError('DINOClsLoss needs >= 2 student crops and >= 1 teacher crop, got '
                             f'{len(student_logits)} and {len(targets)}')
        log_p = [F.log_softmax(s.float() / self.student_temp, dim=-1) for s in student_logits]
        total, pairs = 0.0, 0
        for i, target in enumerate(targets):
            for j, student in enumerate(log_p):
                if i == j:
                    continue
                total = total + torch.sum(-target * student, dim=-1).mean()
                pairs += 1
        return total / pairs
