from .label_subset import stratified_subset
from .transforms import BoxPreservingRandomCrop
from .voc_localization import VOC_CLASSES, VOCLocalizationDataset
from .voc_xml import VOCAnnotationError, parse_voc_xml

__all__ = ['VOCLocalizationDataset', 'VOC_CLASSES', 'VOCAnnotationError', 'parse_voc_xml', 'stratified_subset',
           'BoxPreservingRandomCrop']
