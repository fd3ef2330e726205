"""Detection side of the position-field method (mmdet registries). Detection configs import this package."""
import projects.common  # noqa: F401  (checkpoint compatibility, atomic writes)
import projects.common.coco  # noqa: F401  (CheckedCocoDataset, CheckedCocoMetric)

from .layer_decay import ViTLayerDecayOptimWrapperConstructor
from .pos_field_vitdet import PosFieldViTDet
from ..models.utils.backbone_checkpoint import CheckpointMismatchError, load_backbone_weights, select_backbone
from .simple_fpn import LN2d, SimpleFPN
from .transforms import PadToFrame

__all__ = ['ViTLayerDecayOptimWrapperConstructor', 'PosFieldViTDet', 'CheckpointMismatchError',
           'load_backbone_weights', 'select_backbone', 'LN2d', 'SimpleFPN', 'PadToFrame']
