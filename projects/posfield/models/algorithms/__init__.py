from .ema_teacher import EMATeacher, cosine_momentum, linear_warmup
from .pos_field_ssl import PosFieldSSL

__all__ = ['EMATeacher', 'cosine_momentum', 'linear_warmup', 'PosFieldSSL']
