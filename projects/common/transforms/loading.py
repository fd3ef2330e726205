"""Image loading that never hands the model a silently wrong sample."""
from typing import Optional

import numpy as np
from mmcv.transforms import BaseTransform
from mmengine.logging import print_log
from mmpretrain.registry import TRANSFORMS
from PIL import Image, ImageFile, ImageOps

ON_ERROR = ('raise', 'skip')


class UnreadableImageError(OSError):
    """An image file that cannot be used; the message names the file and the reason."""


def _to_uint8_rgb(img: Image.Image) -> np.ndarray:
    """Convert any PIL mode to HxWx3 uint8 RGB, keeping values (16-bit scaled, not wrapped)."""
    if img.mode in ('I;16', 'I;16B', 'I;16L', 'I;16N', 'I'):
        arr = np.asarray(img).astype(np.float64)
        # 16-bit PNGs open as 'I;16' or 'I'; scale by the type's range, not by the data's max, so the
        # brightness of the image is kept.
        top = 65535.0 if img.mode.startswith('I;16') or arr.max() > 255 else 255.0
        arr = np.clip(np.round(arr * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode == 'F':
        arr = np.asarray(img, dtype=np.float64)
        top = 1.0 if arr.max() <= 1.0 else 255.0
        arr = np.clip(np.round(arr * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode == 'P' and 'transparency' in img.info:
        img = img.convert('RGBA')
    # RGBA / LA: alpha is dropped (not composited): pre-training wants the colour content.
    return np.asarray(img.convert('RGB'))


@TRANSFORMS.register_module()
class LoadRGBImage(BaseTransform):
    """Load ``results['img_path']`` as HxWx3 uint8 **BGR** (mmcv convention; the data preprocessor
    converts to RGB).

    Grayscale is replicated to 3 channels, palette images are expanded, RGBA/LA lose their alpha,
    16-bit images are scaled to 8 bits by the type's range, EXIF orientation is applied. Truncated,
    unreadable or missing files, and images whose shorter side is below ``min_size``, raise
    :class:`UnreadableImageError` naming the file; with ``on_error='skip'`` a warning naming the file is
    logged and ``None`` is returned, which makes mmengine's dataset draw another sample.
    """

    def __init__(self, on_error: str = 'raise', min_size: Optional[int] = None):
        if on_error not in ON_ERROR:
            raise ValueError(f'on_error must be one of {ON_ERROR}, got {on_error!r}')
        self.on_error = on_error
        self.min_size = min_size

    def _fail(self, path: str, reason: str):
        msg = f'cannot use image {path}: {reason}'
        if self.on_error == 'skip':
            print_log(msg + ' (skipped; another sample is drawn)', logger='current', level=30)
            return None
        raise UnreadableImageError(msg)

    def transform(self, results: dict) -> Optional[dict]:
        path = results.get('img_path')
        if path is None:
            raise KeyError("LoadRGBImage needs results['img_path']")
        ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, not a grey band
        try:
            with Image.open(path) as img:
                img.load()
                img = ImageOps.exif_transpose(img)
                rgb = _to_uint8_rgb(img)
        except FileNotFoundError:
            return self._fail(path, 'file not found')
        except (OSError, ValueError, SyntaxError) as exc:  # PIL: truncated / unknown format / corrupt
            return self._fail(path, f'unreadable ({type(exc).__name__}: {exc})')
        h, w = rgb.shape[:2]
        if self.min_size is not None and min(h, w) < self.min_size:
            return self._fail(path, f'{w}x{h} px is smaller than min_size={self.min_size}')
        img = np.ascontiguousarray(rgb[..., ::-1])
        results['img'] = img
        results['img_shape'] = (h, w)
        results['ori_shape'] = (h, w)
        return results

    def __repr__(self):
        return f'{self.__class__.__name__}(on_error={self.on_error!r}, min_size={self.min_size})'
