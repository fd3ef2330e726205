from .dino_cls_head import DINOClsHead
from .dual_mim_head import DualMIMHead, masked_position_accuracy

__all__ = ['DINOClsHead', 'DualMIMHead', 'masked_position_accuracy']
