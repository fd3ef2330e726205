from .ddp_wrapper import SSLDistributedDataParallel
from .layer_decay import ViTLayerDecayOptimWrapperConstructor
from .optim_constructor import PosFieldOptimWrapperConstructor

__all__ = ['SSLDistributedDataParallel', 'ViTLayerDecayOptimWrapperConstructor', 'PosFieldOptimWrapperConstructor']
