from .backbones import EfficientNetLite
from .classifiers import ClsLocModel
from .heads import ClsLocHead
from .utils import BackboneCheckpointMismatch, load_backbone_weights

__all__ = ['EfficientNetLite', 'ClsLocModel', 'ClsLocHead', 'load_backbone_weights', 'BackboneCheckpointMismatch']
