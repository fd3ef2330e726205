"""Detection side of the position-field method (mmdet registries). Detection configs import this package."""
from mmdet.registry import OPTIM_WRAPPER_CONSTRUCTORS

import projects.common  # noqa: F401  (checkpoint compatibility, atomic writes)
import projects.common.coco  # noqa: F401  (CheckedCocoDataset, CheckedCocoMetric)

from ..engine import ViTLayerDecayOptimWrapperConstructor
from .pos_field_vitdet import PosFieldViTDet
from .simple_fpn import LN2d, SimpleFPN
from .transforms import PadToFrame

# the one layer-decay constructor (projects.posfield.engine.layer_decay), in mmdet's registry too
OPTIM_WRAPPER_CONSTRUCTORS.register_module(module=ViTLayerDecayOptimWrapperConstructor)

__all__ = ['ViTLayerDecayOptimWrapperConstructor', 'PosFieldViTDet', 'LN2d', 'SimpleFPN', 'PadToFrame']
