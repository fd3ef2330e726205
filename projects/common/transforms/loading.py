"""Image loading that never hands the model a silently wrong sample."""
import warnings
from typing import Optional, Set

import cv2
import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.logging import print_log
from mmpretrain.registry import TRANSFORMS
from PIL import Image, ImageFile, ImageOps
from torchvision.io import ImageReadMode, decode_jpeg

from ..errors import BadInputError

ON_ERROR = ('raise', 'skip')
# PIL's own default limit (Image.MAX_IMAGE_PIXELS, about 9459 x 9459): larger files are usually decompression
# bombs or scans that would exhaust a data-loader worker's memory.
DEFAULT_MAX_PIXELS = 89_478_485
# One ViT patch: a shorter side below this cannot give a view with any content of its own (a 1x1 image would
# be trained on as a flat colour).
DEFAULT_MIN_SIZE = 16


class UnreadableImageError(BadInputError, OSError):
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


def _decode_jpeg_bgr(path: str) -> np.ndarray:
    """A baseline RGB or grayscale JPEG as HxWx3 uint8 BGR, EXIF orientation applied: torchvision's
    libjpeg-turbo decoder gives PIL's pixels exactly, faster than PIL (docs/benchmarks.md, Loader). Raises
    RuntimeError for a truncated or corrupt file, as PIL does without LOAD_TRUNCATED_IMAGES."""
    data = torch.from_numpy(np.fromfile(path, dtype=np.uint8))
    rgb = decode_jpeg(data, mode=ImageReadMode.RGB, apply_exif_orientation=True)
    return cv2.cvtColor(rgb.permute(1, 2, 0).contiguous().numpy(), cv2.COLOR_RGB2BGR)


@TRANSFORMS.register_module()
class LoadRGBImage(BaseTransform):
    """Load ``results['img_path']`` as HxWx3 uint8 **BGR** (mmcv convention; the data preprocessor
    converts to RGB).

    Grayscale is replicated to 3 channels, palette images are expanded, RGBA/LA lose their alpha,
    16-bit images are scaled to 8 bits by the type's range, EXIF orientation is applied.

    Args:
        on_error: truncated, unreadable or missing files and images over ``max_pixels`` raise
            :class:`UnreadableImageError` naming the file (``'raise'``), or are skipped with a warning naming
            the file (``'skip'``: ``None`` is returned, which makes mmengine's dataset draw another sample).
        min_size: images whose shorter side is below this many pixels are handled as ``on_error`` says
            (the pre-training configs skip them with a warning); ``None`` or 0 keeps them.
        max_pixels: images with more pixels (width x height, read from the header before decoding) are
            handled as ``on_error`` says; ``None`` lifts the limit (PIL's own limit is replaced by this one).

    Each file is warned about once per process (a skipped file is drawn again every epoch).
    """

    def __init__(self, on_error: str = 'raise', min_size: Optional[int] = DEFAULT_MIN_SIZE,
                 max_pixels: Optional[int] = DEFAULT_MAX_PIXELS):
        if on_error not in ON_ERROR:
            raise ValueError(f'LoadRGBImage: on_error must be one of {ON_ERROR}, got {on_error!r}')
        for name, value in (('min_size', min_size), ('max_pixels', max_pixels)):
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f'LoadRGBImage: {name} must be a non-negative int or None, got {value!r}')
        self.on_error = on_error
        self.min_size = min_size
        self.max_pixels = max_pixels
        self._warned: Set[str] = set()

    def _fail(self, path: str, reason: str):
        msg = f'cannot use image {path}: {reason}'
        if self.on_error == 'skip':
            if path not in self._warned:
                self._warned.add(path)
                print_log(msg + ' (skipped; another sample is drawn; not repeated for this file)',
                          logger='current', level=30)
            return None
        raise UnreadableImageError(msg)

    def _open(self, path: str) -> Image.Image:
        """``Image.open`` with this transform's pixel limit instead of PIL's global one."""
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None  # data-loader workers are processes: no other thread sees this
        try:
            with warnings.catch_warnings():
                warnings.simplefilter('ignore', Image.DecompressionBombWarning)
                return Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = saved

    def transform(self, results: dict) -> Optional[dict]:
        path = results.get('img_path')
        if path is None:
            raise KeyError("LoadRGBImage needs results['img_path']")
        ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, not a grey band
        try:
            with self._open(path) as pil:
                w, h = pil.size
                if self.max_pixels is not None and w * h > self.max_pixels:
                    return self._fail(path, f'{w}x{h} = {w * h} pixels is more than max_pixels={self.max_pixels} '
                                      '(a decompression bomb or a huge scan; raise max_pixels to load it)')
                if pil.format == 'JPEG' and pil.mode in ('RGB', 'L'):
                    img = _decode_jpeg_bgr(path)
                else:  # any other format or mode (CMYK JPEGs included): PIL
                    pil.load()
                    img = cv2.cvtColor(_to_uint8_rgb(ImageOps.exif_transpose(pil)), cv2.COLOR_RGB2BGR)
        except FileNotFoundError:
            return self._fail(path, 'file not found')
        except Image.DecompressionBombError as exc:  # not an OSError; only reachable if PIL's limit is used
            return self._fail(path, f'too many pixels ({exc})')
        except (OSError, ValueError, SyntaxError, RuntimeError) as exc:  # truncated / unknown format / corrupt
            return self._fail(path, f'unreadable ({type(exc).__name__}: {exc})')
        h, w = img.shape[:2]
        if self.min_size and min(h, w) < self.min_size:
            return self._fail(path, f'{w}x{h} px is smaller than min_size={self.min_size} (shorter side)')
        results['img'] = img
        results['img_shape'] = (h, w)
        results['ori_shape'] = (h, w)
        return results

    def __repr__(self):
        return (f'{self.__class__.__name__}(on_error={self.on_error!r}, min_size={self.min_size}, '
                f'max_pixels={self.max_pixels})')
