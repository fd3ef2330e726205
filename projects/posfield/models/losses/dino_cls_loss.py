"""DINO's [CLS] self-distillation loss (L_image)."""
from typing import List

import torch
from mmpretrain.registry import MODELS

from .centering import DistillationLoss


@MODELS.register_module()
class DINOClsLoss(DistillationLoss):
    """Cross-entropy between teacher targets of each global crop and student predictions of every other crop.

    The student's logits are one ``(B, K)`` block per crop, global crops first (same order as the teacher's);
    the targets one ``(B, K)`` tensor per global crop. Pairs of the same view are skipped; the loss is the mean
    over the remaining pairs. It is computed as one row per student crop (:meth:`row_targets`) and the mean of
    those rows' cross-entropies (:meth:`reduce`); :class:`DINOClsHead` puts the two together.
    """

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
