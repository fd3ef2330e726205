"""The shared layer-decay constructor (:mod:`.layer_decay`) in mmpretrain's registry.

``PosFieldOptimWrapperConstructor`` is the name the pre-training configs have always used; it is the same class.
"""
from mmpretrain.registry import OPTIM_WRAPPER_CONSTRUCTORS

from .layer_decay import ViTLayerDecayOptimWrapperConstructor

OPTIM_WRAPPER_CONSTRUCTORS.register_module(module=ViTLayerDecayOptimWrapperConstructor)
OPTIM_WRAPPER_CONSTRUCTORS.register_module(name='PosFieldOptimWrapperConstructor',
                                           module=ViTLayerDecayOptimWrapperConstructor)
PosFieldOptimWrapperConstructor = ViTLayerDecayOptimWrapperConstructor
