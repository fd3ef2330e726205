"""L_image: DINO distillation of the [CLS] token."""
from typing import Dict, List

import torch
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS


@MODELS.register_module()
class DINOClsHead(BaseModule):
    """Holds a :class:`DINOClsLoss`; ``loss`` returns ``dict(loss_image=...)``."""

    def __init__(self, loss: dict, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.loss_module = MODELS.build(loss)

    def loss(self, student_logits: List[torch.Tensor], teacher_logits: List[torch.Tensor],
             teacher_temp: float) -> Dict[str, torch.Tensor]:
        return dict(loss_image=self.loss_module(student_logits, teacher_logits, teacher_temp))
