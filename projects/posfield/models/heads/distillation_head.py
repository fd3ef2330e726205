"""What the heads share: the teacher's targets and centre, and their losses from ONE cross-entropy call."""
from typing import Callable, Dict, NamedTuple, Sequence

import torch
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS

from ..losses.soft_cross_entropy import soft_cross_entropy


class LossRows(NamedTuple):
    """A head's block of student rows: the target of each row, the student temperature, and the head's losses
    from the rows' cross-entropies."""
    targets: torch.Tensor
    student_temp: float
    losses: Callable[[torch.Tensor], Dict[str, torch.Tensor]]


def head_losses(logits: torch.Tensor, blocks: Sequence[LossRows]) -> Dict[str, torch.Tensor]:
    """The losses of the heads whose student rows make up ``logits``, block after block.

    One :func:`soft_cross_entropy` call for all the rows: one pass over the head output, whose backward writes
    the gradient of the whole tensor (no slices of the logits, so no concatenation of their gradients).
    """
    ce = soft_cross_entropy(logits, [b.targets for b in blocks], [b.student_temp for b in blocks])
    losses = {}
    for block, block_ce in zip(blocks, ce.split([b.targets.shape[0] for b in blocks])):
        losses.update(block.losses(block_ce))
    return losses


class DistillationHead(BaseModule):
    """Holds the head's loss module (``loss``, a :class:`DistillationLoss` config): the teacher's targets and
    the centre. Subclasses give their student rows as :class:`LossRows` (``loss_rows``), for :func:`head_losses`."""

    def __init__(self, loss: dict, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.loss_module = MODELS.build(loss)

    def targets(self, teacher_logits: torch.Tensor, teacher_temp: float) -> torch.Tensor:
        """Targets of the teacher's rows (then the centre update)."""
        return self.loss_module.teacher_targets(teacher_logits, teacher_temp)

    @property
    def center(self) -> torch.Tensor:
        """The centre of the teacher's logits (the buffer itself)."""
        return self.loss_module.center
