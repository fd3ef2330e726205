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

    ``student_logits``: one ``(B, K)`` tensor per crop, global crops first (same order as the teacher's);
    ``teacher_logits``: one ``(B, K)`` tensor per global crop. Pairs of the same view are skipped; the loss is
    the mean over the remaining pairs. The centre is updated after the targets are computed.
    """

    def __init__(self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9,
                 centering: str = 'centering'):
        super().__init__()
        self.student_temp = student_temp
        self.centering = TeacherCentering(out_dim, center_momentum, centering)

    @property
    def center(self) -> torch.Tensor:
        return self.centering.center

    def forward(self, student_logits: List[torch.Tensor], teacher_logits: List[torch.Tensor],
                teacher_temp: float) -> torch.Tensor:
        if len(student_logits) < 2 or not teacher_logits:
            raise ValueError('DINOClsLoss needs >= 2 student crops and >= 1 teacher crop, got '
                             f'{len(student_logits)} and {len(teacher_logits)}')
        all_teacher = torch.cat(teacher_logits)
        targets = self.centering.targets(all_teacher, teacher_temp).chunk(len(teacher_logits))
        total, pairs = 0.0, 0
        for i, target in enumerate(targets):
            for j, student in enumerate(student_logits):
                if i == j:
                    continue
                log_p = F.log_softmax(student.float() / self.student_temp, dim=-1)
                total = total + torch.sum(-target * log_p, dim=-1).mean()
                pairs += 1
        self.centering.update(all_teacher)
        return total / pairs
