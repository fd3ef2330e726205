from .ddp_wrapper import SSLDistributedDataParallel
from .layer_decay import ViTLayerDecayOptimWrapperConstructor
from .optim_constructor import PosFieldOptimWrapperConstructor
from .resume import RandomStateHook, ResumableEpochBasedTrainLoop, ResumableIterBasedTrainLoop

__all__ = ['SSLDistributedDataParallel', 'ViTLayerDecayOptimWrapperConstructor', 'PosFieldOptimWrapperConstructor',
           'RandomStateHook', 'ResumableEpochBasedTrainLoop', 'ResumableIterBasedTrainLoop']
