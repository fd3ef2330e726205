from .centering import TeacherCentering, sinkhorn_knopp
from .dino_cls_loss import DINOClsLoss
from .ibot_patch_loss import iBOTPatchLoss
from .koleo_loss import KoLeoLoss

__all__ = ['TeacherCentering', 'sinkhorn_knopp', 'DINOClsLoss', 'iBOTPatchLoss', 'KoLeoLoss']
