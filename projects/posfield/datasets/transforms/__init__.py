from projects.common.transforms import HueSafeColorJitter, LoadRGBImage, UnreadableImageError

from .pos_field_multicrop import PosFieldMultiCrop, sample_crop_box

__all__ = ['HueSafeColorJitter', 'LoadRGBImage', 'UnreadableImageError', 'PosFieldMultiCrop', 'sample_crop_box']
