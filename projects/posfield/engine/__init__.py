from .ddp_wrapper import SSLDistributedDataParallel
from .optim_constructor import PosFieldOptimWrapperConstructor

__all__ = ['SSLDistributedDataParallel', 'PosFieldOptimWrapperConstructor']
