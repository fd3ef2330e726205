"""Dual masked prediction: L_content on content-masked tokens and L_pos on position-masked tokens."""
from typing import Dict, Optional

import torch
from mmpretrain.registry import MODELS

from .distillation_head import DistillationHead, LossRows


def masked_position_accuracy(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Share of position-masked tokens whose student prototype (argmax) equals the teacher's."""
    if student_logits.shape[0] == 0:
        return student_logits.new_zeros(())
    return (student_logits.argmax(-1) == teacher_logits.argmax(-1)).float().mean()


@MODELS.register_module()
class DualMIMHead(DistillationHead):
    """``loss_content`` and ``loss_pos`` from one :class:`iBOTPatchLoss` (one centre) for both branches.

    The teacher sees every view unmasked and with correct positions, so the targets of both branches
    come from one distribution: :meth:`targets` normalises all masked tokens of the step together (one
    centre, one Sinkhorn-Knopp problem) (decision, docs/posfield.md: L_pos shares the iBOT head and
    prototypes).
    """

    def __init__(self, loss: dict, content_weight: float = 1.0, pos_weight: float = 1.0, init_cfg=None):
        super().__init__(loss, init_cfg=init_cfg)
        self.content_weight = content_weight
        self.pos_weight = pos_weight

    def loss_rows(self, targets: torch.Tensor, n_content: int,
                  weights: Optional[torch.Tensor] = None) -> LossRows:
        """The student's masked-token rows: the ``n_content`` content-masked rows, then the position-masked ones;
        ``targets`` ``(M, K)`` and ``weights`` ``(M,)`` (or None) in the same order (:meth:`iBOTPatchLoss.reduce`)."""

        def losses(ce: torch.Tensor) -> Dict[str, torch.Tensor]:
            rows = [n_content, ce.shape[0] - n_content]
            ce_content, ce_pos = ce.split(rows)
            w_content, w_pos = weights.split(rows) if weights is not None else (None, None)
            return dict(loss_content=self.content_weight * self.loss_module.reduce(ce_content, w_content),
                        loss_pos=self.pos_weight * self.loss_module.reduce(ce_pos, w_pos))

        return LossRows(targets, self.loss_module.student_temp, losses)
