"""L_image: DINO distillation of the [CLS] token."""
from typing import Dict, List

import torch
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS


@MODELS.register_module()
class DINOClsHead(BaseModule):
    """Holds a :class:`DINOClsLoss`: ``targets`` from teacher logits, ``loss`` -> ``dict(loss_image=...)``.

    ``row_targets`` / ``loss_from_ce`` split ``loss`` around the cross-entropy, so the algorithm can compute it
    for the [CLS] and the patch rows of one head output in one call (:func:`soft_cross_entropy`).
    """

    def __init__(self, loss: dict, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.loss_module = MODELS.build(loss)

    def targets(self, teacher_logits: torch.Tensor, teacher_temp: float) -> torch.Tensor:
        return self.loss_module.teacher_targets(teacher_logits, teacher_temp)

    @property
    def student_temp(self) -> float:
        return self.loss_module.student_temp

    def row_targets(self, targets: List[torch.Tensor], n_views: int) -> torch.Tensor:
        """The target of every student [CLS] row, ``(n_views * B, K)`` (:meth:`DINOClsLoss.row_targets`)."""
        return self.loss_module.row_targets(targets, n_views)

    def loss_from_ce(self, ce: torch.Tensor, n_views: int, n_targets: int) -> Dict[str, torch.Tensor]:
        """From the cross-entropies of the student [CLS] rows against :meth:`row_targets`."""
        return dict(loss_image=self.loss_module.reduce(ce, n_views, n_targets))

    def loss(self, student_logits: List[torch.Tensor], targets: List[torch.Tensor]) -> Dict[str, torch.Tensor]:
        return dict(loss_image=self.loss_module(student_logits, targets))
