from projects.common.transforms import HueSafeColorJitter, LoadRGBImage  # noqa: F401  (shared transforms)

# ^ shared with the position-field line (registered there): mmcv 2.1.0's ColorJitter hue fails under
#   numpy >= 2, and LoadRGBImage turns any image mode into RGB and can skip unreadable files.
from .box_preserving_crop import BoxPreservingRandomCrop

__all__ = ['BoxPreservingRandomCrop', 'HueSafeColorJitter', 'LoadRGBImage']
