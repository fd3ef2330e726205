"""Colour jitter that works with numpy 2.

mmcv 2.1.0's ``adjust_hue`` computes ``np.uint8(hue_factor * 255)``, which raises ``OverflowError`` for
every negative hue factor under numpy >= 2, so mmpretrain's ``ColorJitter(hue=...)`` fails about half the
time. This transform has torchvision's semantics (factors drawn per call, operations in random order)
and does the hue shift with modular arithmetic.
"""
from typing import Optional, Tuple

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmpretrain.registry import TRANSFORMS


def _range(value: float, center: float = 1.0, bound: Optional[Tuple[float, float]] = None):
    low, high = center - value, center + value
    if bound is not None:
        low, high = max(low, bound[0]), min(high, bound[1])
    return low, high


@TRANSFORMS.register_module()
class HueSafeColorJitter(BaseTransform):
    """Random brightness, contrast, saturation and hue of a uint8 BGR image (torchvision's ColorJitter)."""

    def __init__(self, brightness: float = 0.0, contrast: float = 0.0, saturation: float = 0.0,
                 hue: float = 0.0):
        if not 0 <= hue <= 0.5:
            raise ValueError(f'hue must be in [0, 0.5], got {hue}')
        self.brightness = _range(brightness, bound=(0, float('inf'))) if brightness else None
        self.contrast = _range(contrast, bound=(0, float('inf'))) if contrast else None
        self.saturation = _range(saturation, bound=(0, float('inf'))) if saturation else None
        self.hue = (-hue, hue) if hue else None

    @staticmethod
    def _gray(img: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_BGR2GRAY).astype(np.float32)[..., None]

    def transform(self, results: dict) -> dict:
        img = results['img'].astype(np.float32)
        for op in np.random.permutation(4):
            if op == 0 and self.brightness:
                img = img * np.random.uniform(*self.brightness)
            elif op == 1 and self.contrast:
                mean = self._gray(np.clip(img, 0, 255)).mean()
                img = mean + (img - mean) * np.random.uniform(*self.contrast)
            elif op == 2 and self.saturation:
                gray = self._gray(np.clip(img, 0, 255))
                img = gray + (img - gray) * np.random.uniform(*self.saturation)
            elif op == 3 and self.hue:
                hsv = cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_BGR2HSV_FULL)
                shift = int(round(np.random.uniform(*self.hue) * 255))
                hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + shift) % 256).astype(np.uint8)
                img = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR_FULL).astype(np.float32)
            img = np.clip(img, 0, 255)
        results['img'] = img.astype(np.uint8)
        return results
