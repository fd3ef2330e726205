from .centering import DistillationLoss, TeacherCentering, sinkhorn_knopp
from .dino_cls_loss import DINOClsLoss
from .ibot_patch_loss import iBOTPatchLoss
from .koleo_loss import KoLeoLoss
from .soft_cross_entropy import soft_cross_entropy

__all__ = ['DistillationLoss', 'TeacherCentering', 'sinkhorn_knopp', 'DINOClsLoss', 'iBOTPatchLoss', 'KoLeoLoss',
           'soft_cross_entropy']
