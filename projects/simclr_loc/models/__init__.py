from .backbones import EfficientNetLite
from .classifiers import ClsLocModel
from .heads import ClsLocHead

__all__ = ['EfficientNetLite', 'ClsLocModel', 'ClsLocHead']
