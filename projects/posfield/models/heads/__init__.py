from .dino_cls_head import DINOClsHead
from .distillation_head import DistillationHead, LossRows, head_losses
from .dual_mim_head import DualMIMHead, masked_position_accuracy

__all__ = ['DINOClsHead', 'DistillationHead', 'DualMIMHead', 'LossRows', 'head_losses', 'masked_position_accuracy']
