"""Data transforms shared by the project packages (registered in mmpretrain's TRANSFORMS):
robust RGB loading and a colour jitter that works under numpy 2. Imported by the packages that use them,
not by :mod:`projects.common` itself, so the checkpoint helpers stay light."""
from .loading import LoadRGBImage, UnreadableImageError
from .photometric import HueSafeColorJitter

__all__ = ['LoadRGBImage', 'UnreadableImageError', 'HueSafeColorJitter']
