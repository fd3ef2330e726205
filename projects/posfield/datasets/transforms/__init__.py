from projects.common.transforms import HueSafeColorJitter, LoadRGBImage, UnreadableImageError

from .masking import MASK_MODES, MASK_UNITS, batch_masks, block_mask, cross_mask, make_mask, random_mask
from .pos_field_multicrop import PosFieldMultiCrop, sample_crop_box

__all__ = ['HueSafeColorJitter', 'LoadRGBImage', 'UnreadableImageError', 'MASK_MODES', 'MASK_UNITS', 'batch_masks',
           'block_mask', 'cross_mask', 'make_mask', 'random_mask', 'PosFieldMultiCrop', 'sample_crop_box']
