"""iBOT's masked-patch distillation loss, used for both masked content and masked position."""
from typing import Optional

import torch
from mmpretrain.registry import MODELS

from .centering import DistillationLoss


@MODELS.register_module()
class iBOTPatchLoss(DistillationLoss):  # noqa: N801 (the method's name)
    """Cross-entropy between teacher targets and student predictions of masked tokens.

    The student's rows and their targets are ``(M, K)`` for the M masked tokens, one target per row
    (:class:`DualMIMHead` puts the cross-entropy and :meth:`reduce` together).
    """

    @staticmethod
    def reduce(ce: torch.Tensor, weights: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The loss from the per-token cross-entropies ``(M,)``.

        ``weights`` ``(M,)``: DINOv2's ``masks_weight / number of global views``
        (:class:`MultiViewBatch.mask_weights`); the loss is ``sum(w * ce)``, so every masked view counts once and
        the normalisation (the number of global views in the batch) does not depend on how many views this branch
        masked. Without weights it is the mean over tokens. ``M == 0`` gives a zero that keeps the graph.
        """
        if ce.shape[0] == 0:
            return ce.sum() * 0.0
        if weights is None:
            return ce.mean()
        return (ce * weights.to(ce.dtype)).sum()
