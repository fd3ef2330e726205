"""Multi-crop views that remember where they came from: per-view canvas box and flip."""
import math
from typing import List, Optional, Sequence, Tuple

import numpy as np
import PIL
import torch
import torch.nn.functional as F
from mmcv.transforms import BaseTransform, Compose
from mmengine.registry import DefaultScope
from mmpretrain.registry import TRANSFORMS


def _jitter_gray():
    return [
        dict(type='RandomApply', prob=0.8,
             transforms=[dict(type='HueSafeColorJitter', brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)]),
        dict(type='RandomGrayscale', prob=0.2, keep_channels=True, channel_weights=(0.114, 0.587, 0.2989)),
    ]


def _blur(prob):
    return dict(type='GaussianBlur', magnitude_range=(0.1, 2.0), magnitude_std='inf', prob=prob)


# DINO's recipe: global view 1 always blurred; global view 2 rarely blurred, sometimes solarised; locals half.
DINO_GLOBAL_TRANSFORMS = [
    _jitter_gray() + [_blur(1.0)],
    _jitter_gray() + [_blur(0.1), dict(type='Solarize', thr=128, prob=0.2)],
]
DINO_LOCAL_TRANSFORMS = _jitter_gray() + [_blur(0.5)]


def sample_crop_box(rng: np.random.Generator, height: int, width: int, scale: Tuple[float, float],
                    ratio: Tuple[float, float]) -> Tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop box ``(x0, y0, x1, y1)`` in pixels, with its centre-crop fallback."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            y0 = int(rng.integers(0, height - h + 1))
            x0 = int(rng.integers(0, width - w + 1))
            return x0, y0, x0 + w, y0 + h
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    x0, y0 = (width - w) // 2, (height - h) // 2
    return x0, y0, x0 + w, y0 + h


# Pillow 13 runs the vertical pass first when the height shrinks by more than twice what the width does; earlier
# versions always run the horizontal pass first. The order matters where bicubic overshoot is clipped to uint8.
PIL_VERTICAL_FIRST = int(PIL.__version__.split('.')[0]) >= 13


def resize_bicubic(crop: torch.Tensor, size: int) -> torch.Tensor:
    """PIL's ``resize((size, size), BICUBIC)`` of a uint8 ``1 x C x h x w`` crop, by torch's uint8 kernel: the same
    antialiased filter (a = -0.5) and two passes with a uint8 image between them in the installed Pillow's order,
    so the result is PIL's within two grey levels (weight rounding), in a fraction of PIL's CPU time."""
    crop = crop.contiguous(memory_format=torch.channels_last)  # the layout of torch's vectorised uint8 path
    height, width = crop.shape[-2:]
    if PIL_VERTICAL_FIRST and height - size > 0 and height - size > 2 * (width - size):
        crop = F.interpolate(crop, size=(size, width), mode='bicubic', antialias=True)
    return F.interpolate(crop, size=(size, size), mode='bicubic', antialias=True)


@TRANSFORMS.register_module()
class PosFieldMultiCrop(BaseTransform):
    """Global and local views of one image, each with the box it was cut from and its flip.

    Each view: a RandomResizedCrop box in source pixels, resized to the view size (antialiased bicubic, as
    DINOv2's PIL resize), flipped with ``flip_prob``. With ``photometric=True``, photometric augmentation
    (DINO's recipe by default) runs per view here, in the worker, through mmpretrain transforms:
    ``global_transforms`` is a list of pipelines used for global views in turn, ``local_transforms`` one
    pipeline for the locals; ``[]`` disables them. With ``photometric=False`` the worker only crops, resizes
    and flips, and the same recipe runs batched on the model's device
    (:class:`~projects.posfield.models.photometric.MultiCropPhotometric`, the data preprocessor's
    ``photometric`` argument); ``global_transforms`` / ``local_transforms`` are then not allowed.

    Outputs: ``img`` (list of V HxWx3 uint8 views, globals first), ``crop_boxes`` float32 (V, 4): each view's
    box ``(x0, y0, x1, y1)`` as fractions of the source image, ``view_flips`` bool (V,), ``source_hw`` int64
    (2,). The canvas placement (shared by all views of an image), the canvas boxes and the masks are made per
    batch by :func:`~projects.posfield.batch.collate.multiview_collate`. ``seed`` makes the geometry
    deterministic (tests).
    """

    def __init__(self, global_crops_number: int = 2, global_crops_size: int = 224,
                 global_crops_scale: Tuple[float, float] = (0.32, 1.0), local_crops_number: int = 8,
                 local_crops_size: int = 96, local_crops_scale: Tuple[float, float] = (0.05, 0.32),
                 ratio: Tuple[float, float] = (3 / 4, 4 / 3), flip_prob: float = 0.5,
                 global_transforms: Optional[Sequence[Sequence[dict]]] = None,
                 local_transforms: Optional[Sequence[dict]] = None, photometric: bool = True,
                 seed: Optional[int] = None):
        if global_crops_number < 1:
            raise ValueError(f'global_crops_number must be >= 1, got {global_crops_number}')
        self.global_crops_number = global_crops_number
        self.global_crops_size = global_crops_size
        self.global_crops_scale = tuple(global_crops_scale)
        self.local_crops_number = local_crops_number
        self.local_crops_size = local_crops_size
        self.local_crops_scale = tuple(local_crops_scale)
        self.ratio = tuple(ratio)
        self.flip_prob = flip_prob
        if not photometric:
            if global_transforms or local_transforms:
                raise ValueError('PosFieldMultiCrop: photometric=False (the augmentation runs on the device) '
                                 'takes no global_transforms / local_transforms')
            global_transforms, local_transforms = [], []
        self.photometric = photometric
        global_transforms = DINO_GLOBAL_TRANSFORMS if global_transforms is None else global_transforms
        local_transforms = DINO_LOCAL_TRANSFORMS if local_transforms is None else local_transforms
        # mmcv's Compose (and RandomApply inside it) builds from the *default scope's* registry; built with no
        # default scope (a bare transform, a test run alone) it would look in mmengine's root registry, which
        # has none of mmpretrain's or this repository's transforms. The view pipelines are mmpretrain's.
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            self.global_pipelines = [Compose(list(t)) for t in global_transforms] or [Compose([])]
            self.local_pipeline = Compose(list(local_transforms))
        self._rng = np.random.default_rng(seed) if seed is not None else None

    def _generator(self) -> np.random.Generator:
        # Without a seed, draw from numpy's global state, which mmengine seeds per worker.
        return self._rng if self._rng is not None else np.random.default_rng(np.random.randint(2**31))

    def _view(self, source, height, width, size, scale, rng, pipeline):
        x0, y0, x1, y1 = sample_crop_box(rng, height, width, scale, self.ratio)
        # DINOv2's RandomResizedCrop(interpolation=BICUBIC) on a PIL image: crop, then PIL's bicubic resize
        view = resize_bicubic(source[..., y0:y1, x0:x1], size)[0]
        flip = bool(rng.random() < self.flip_prob)
        if flip:
            view = view.flip(-1)
        view = view.permute(1, 2, 0).numpy()  # the channels-last result's own HxWx3 buffer, no copy
        if self.photometric:
            view = pipeline(dict(img=np.ascontiguousarray(view)))['img']
        return view, (x0 / width, y0 / height, x1 / width, y1 / height), flip

    def transform(self, results: dict) -> dict:
        img = results['img']
        height, width = img.shape[:2]
        source = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]  # a view: 1x3xHxW
        rng = self._generator()
        views: List[np.ndarray] = []
        boxes, flips = [], []
        for i in range(self.global_crops_number):
            pipeline = self.global_pipelines[i % len(self.global_pipelines)]
            v, b, f = self._view(source, height, width, self.global_crops_size, self.global_crops_scale, rng, pipeline)
            views.append(v), boxes.append(b), flips.append(f)
        for _ in range(self.local_crops_number):
            v, b, f = self._view(source, height, width, self.local_crops_size, self.local_crops_scale, rng,
                                 self.local_pipeline)
            views.append(v), boxes.append(b), flips.append(f)
        results['img'] = views
        results['img_shape'] = (self.global_crops_size, self.global_crops_size)
        results['crop_boxes'] = np.asarray(boxes, dtype=np.float32)
        results['view_flips'] = np.asarray(flips, dtype=bool)
        results['source_hw'] = np.asarray(img.shape[:2], dtype=np.int64)
        return results

    def __repr__(self):
        return (f'{self.__class__.__name__}(global={self.global_crops_number}x{self.global_crops_size} '
                f'{self.global_crops_scale}, local={self.local_crops_number}x{self.local_crops_size} '
                f'{self.local_crops_scale})')
