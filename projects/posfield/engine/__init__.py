from mmpretrain.registry import OPTIM_WRAPPER_CONSTRUCTORS

from .ddp_wrapper import SSLDistributedDataParallel
from .layer_decay import ViTLayerDecayOptimWrapperConstructor
from .resume import RandomStateHook, ResumableEpochBasedTrainLoop, ResumableIterBasedTrainLoop

# the one layer-decay constructor, also registered in mmdet's registry by projects.posfield.det
OPTIM_WRAPPER_CONSTRUCTORS.register_module(module=ViTLayerDecayOptimWrapperConstructor)

__all__ = ['SSLDistributedDataParallel', 'ViTLayerDecayOptimWrapperConstructor',
           'RandomStateHook', 'ResumableEpochBasedTrainLoop', 'ResumableIterBasedTrainLoop']
