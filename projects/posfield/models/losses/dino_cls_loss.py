"""DINO's [CLS] self-distillation loss (L_image)."""
from typing import List

import torch
import torch.nn as nn
from mmpretrain.registry import MODELS

from .centering import TeacherCentering
from .soft_cross_entropy import soft_cross_entropy


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

    @staticmethod
    def _check(n_views: int, n_targets: int) -> None:
        if n_views < 2 or n_targets < 1:
            raise ValueError('DINOClsLoss needs >= 2 student crops and >= 1 teacher crop, got '
                             f'{n_views} and {n_targets}')

    def row_targets(self, targets: List[torch.Tensor], n_views: int) -> torch.Tensor:
        """``(n_views * B, K)``: for each student crop, the sum of the targets of the OTHER teacher crops.

        The cross-entropy is linear in the target, so one row against this sum is the sum of the crop's pairs.
        """
        self._check(n_views, len(targets))

        def total(parts):
            return sum(parts[1:], parts[0]) if parts else torch.zeros_like(targets[0])

        rows = [total([t for i, t in enumerate(targets) if i != j]) for j in range(min(n_views, len(targets)))]
        return torch.cat(rows + [total(targets)] * (n_views - len(rows)))

    def reduce(self, ce: torch.Tensor, n_views: int, n_targets: int) -> torch.Tensor:
        """The loss from the per-row cross-entropies against :meth:`row_targets`: the mean over the
        (teacher crop, other student crop) pairs of the mean over images."""
        self._check(n_views, n_targets)
        pairs = n_targets * n_views - min(n_targets, n_views)
        return ce.sum() / (pairs * (ce.shape[0] // n_views))

    def forward(self, student_logits: List[torch.Tensor], targets: List[torch.Tensor]) -> torch.Tensor:
        n_views = len(student_logits)
        row_targets = self.row_targets(targets, n_views)
        ce = soft_cross_entropy(torch.cat(student_logits), row_targets, self.student_temp)
        return self.reduce(ce, n_views, len(targets))
