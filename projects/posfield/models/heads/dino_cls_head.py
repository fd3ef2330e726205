"""L_image: DINO distillation of the [CLS] token."""
from typing import Dict, List

import torch
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS


@MODELS.register_module()
class DINOClsHead(BaseModule):
    """Holds a :class:`DINOClsLoss`: ``targets`` from teacher logits, ``loss`` -> ``dict(loss_image=...)``."""

    def __init__(self, loss: dict, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.loss_module = MODELS.build(loss)

    def targets(self, teacher_logits: torch.Tensor, teacher_temp: float) -> torch.Tensor:
        return self.loss_module.teacher_targets(teacher_logits, teacher_temp)

    def loss(self, student_logits: List[torch.Tensor], targets: List[torch.Tensor]) -> Dict[str, torch.Tensor]:
        return dict(loss_image=self.loss_module(student_logits, targets))
