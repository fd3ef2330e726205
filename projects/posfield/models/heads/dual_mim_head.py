"""Dual masked prediction: L_content on content-masked tokens and L_pos on position-masked tokens."""
from typing import Dict, Optional

import torch
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS


def first_argmax(x: torch.Tensor, block: int = 256) -> torch.Tensor:
    """``x.argmax(-1)`` of ``(rows, K)`` (the first maximum; NaN counts as the maximum, as in ``argmax``).

    On the CPU, ``argmax`` over 65536 prototypes is several times slower than ``amax`` (docs/benchmarks.md). So
    the maximum's block comes from a block-wise ``amax`` and the index from an ``argmax`` inside that block only.
    Plain ``argmax`` is used elsewhere: on other devices, for strided input and where K is not a multiple of
    ``block``.
    """
    rows, k = x.shape
    if x.device.type != 'cpu' or not x.is_contiguous() or k % block or k <= block:
        return x.argmax(-1)
    blocks = x.view(rows, k // block, block)
    which = blocks.amax(-1).argmax(-1)  # the first block that holds the maximum
    inside = blocks[torch.arange(rows, device=x.device), which].argmax(-1)
    return which * block + inside


def masked_position_accuracy(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Share of position-masked tokens whose student prototype (argmax) equals the teacher's."""
    if student_logits.shape[0] == 0:
        return student_logits.new_zeros(())
    return (first_argmax(student_logits) == first_argmax(teacher_logits)).float().mean()


@MODELS.register_module()
class DualMIMHead(BaseModule):
    """One :class:`iBOTPatchLoss` (one centre) for both branches.

    The teacher sees every view unmasked and with correct positions, so the targets of both branches
    come from one distribution: :meth:`targets` normalises all masked tokens of the step together (one
    centre, one Sinkhorn-Knopp problem) (decision, docs/posfield.md: L_pos shares the iBOT head and
    prototypes).
    """

    def __init__(self, loss: dict, content_weight: float = 1.0, pos_weight: float = 1.0, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.loss_module = MODELS.build(loss)
        self.content_weight = content_weight
        self.pos_weight = pos_weight

    def targets(self, teacher_logits: torch.Tensor, teacher_temp: float) -> torch.Tensor:
        return self.loss_module.teacher_targets(teacher_logits, teacher_temp)

    @property
    def student_temp(self) -> float:
        return self.loss_module.student_temp

    def loss_from_ce(self, ce_content: torch.Tensor, ce_pos: torch.Tensor,
                     content_weights: Optional[torch.Tensor] = None,
                     pos_weights: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """From the per-token cross-entropies of the content- and position-masked rows against their targets."""
        loss_content = self.loss_module.reduce(ce_content, content_weights)
        loss_pos = self.loss_module.reduce(ce_pos, pos_weights)
        return dict(loss_content=self.content_weight * loss_content, loss_pos=self.pos_weight * loss_pos)

    def loss(self, student_content: torch.Tensor, target_content: torch.Tensor,
             student_pos: torch.Tensor, target_pos: torch.Tensor,
             content_weights: Optional[torch.Tensor] = None,
             pos_weights: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        loss_content = self.loss_module(student_content, target_content, content_weights)
        loss_pos = self.loss_module(student_pos, target_pos, pos_weights)
        return dict(loss_content=self.content_weight * loss_content, loss_pos=self.pos_weight * loss_pos)
