"""Detection side of the position-field method (mmdet registries). Detection configs import this package."""
import projects.common  # noqa: F401  (checkpoint compatibility, atomic writes)
import projects.common.coco  # noqa: F401  (CheckedCocoDataset, CheckedCocoMetric)

from .layer_decay import ViTLayerDecayOptimWrapperConstructor
from .pos_field_vitdet import PosFieldViTDet
from .simple_fpn import LN2d, SimpleFPN
from .transforms import PadToFrame

__all__ = ['ViTLayerDecayOptimWrapperConstructor', 'PosFieldViTDet', 'LN2d', 'SimpleFPN', 'PadToFrame']
