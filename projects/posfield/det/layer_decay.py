"""The shared layer-decay constructor (:mod:`projects.posfield.engine.layer_decay`) in mmdet's registry."""
from mmdet.registry import OPTIM_WRAPPER_CONSTRUCTORS

from ..engine.layer_decay import ViTLayerDecayOptimWrapperConstructor

OPTIM_WRAPPER_CONSTRUCTORS.register_module(module=ViTLayerDecayOptimWrapperConstructor)
