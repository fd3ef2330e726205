"""The object classes of the composed set: parametric shapes rasterised with anti-aliased edges.

A shape is a list of fill operations (polygon in unit coordinates, fill or erase), scaled anisotropically,
rotated and translated into image coordinates, then rasterised at ``SUPERSAMPLE`` x resolution and
area-averaged into an alpha map. The object's mask is ``alpha >= 0.5``. None of the shapes has a hole
(a ring would need RLE masks; the set uses polygons, see ``docs/demo_data.md``).
"""
from typing import List, Tuple

import cv2
import numpy as np

CLASSES: Tuple[str, ...] = ('ellipse', 'rectangle', 'triangle', 'star', 'cross', 'crescent')
SUPERSAMPLE = 4
_SHIFT = 4  # cv2.fillPoly fixed-point bits: vertices at 1/16 px of the supersampled grid


def _circle(n: int = 64, r: float = 1.0, cx: float = 0.0) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + r * np.cos(t), r * np.sin(t)], 1)


def unit_shape(name: str, rng: np.random.Generator) -> List[Tuple[np.ndarray, bool]]:
    """Fill operations ``[(vertices (N, 2) in about [-1, 1]^2, fill), ...]`` of one random instance of ``name``."""
    if name == 'ellipse':
        return [(_circle(), True)]
    if name == 'rectangle':
        return [(np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float), True)]
    if name == 'triangle':
        ang = np.deg2rad(90 + 120 * np.arange(3) + rng.uniform(-12, 12, 3))
        r = rng.uniform(0.85, 1.1, 3)
        return [(np.stack([r * np.cos(ang), r * np.sin(ang)], 1), True)]
    if name == 'star':
        k = np.arange(10)
        r = np.where(k % 2 == 0, 1.0, rng.uniform(0.38, 0.55))
        ang = np.pi / 2 + k * np.pi / 5
        return [(np.stack([r * np.cos(ang), r * np.sin(ang)], 1), True)]
    if name == 'cross':
        t = rng.uniform(0.28, 0.42)
        pts = [(-t, -1), (t, -1), (t, -t), (1, -t), (1, t), (t, t), (t, 1), (-t, 1), (-t, t), (-1, t), (-1, -t),
               (-t, -t)]
        return [(np.array(pts, float), True)]
    if name == 'crescent':
        # the erased disc always crosses the outer circle (d + ri > 1.05), so no hole can appear
        ri, d = rng.uniform(0.7, 0.9), rng.uniform(0.4, 0.65)
        return [(_circle(), True), (_circle(r=ri, cx=d), False)]
    raise ValueError(f'unknown shape class {name!r}; expected one of {CLASSES}')


def place(ops, center: Tuple[float, float], radius: float, aspect: float, angle: float):
    """Scale (radius, radius * aspect), rotate by ``angle`` (radians) and move to ``center`` (pixels)."""
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    return [((pts * [radius, radius * aspect]) @ rot.T + center, fill) for pts, fill in ops]


def rasterise(ops) -> Tuple[np.ndarray, int, int]:
    """Anti-aliased alpha (float32 in [0, 1]) of placed fill operations and its top-left pixel ``(x0, y0)``.

    Pixel ``(i, j)`` covers ``[j, j + 1) x [i, i + 1)`` of the continuous image plane (COCO convention).
    """
    allpts = np.concatenate([p for p, _ in ops])
    x0, y0 = np.floor(allpts.min(0)).astype(int) - 1
    x1, y1 = np.ceil(allpts.max(0)).astype(int) + 1
    w, h = x1 - x0, y1 - y0
    canvas = np.zeros((h * SUPERSAMPLE, w * SUPERSAMPLE), np.uint8)
    for pts, fill in ops:
        # supersampled pixel centres sit at (k + 0.5) / SUPERSAMPLE in image units
        q = np.round(((pts - [x0, y0]) * SUPERSAMPLE - 0.5) * (1 << _SHIFT)).astype(np.int32)
        cv2.fillPoly(canvas, [q], 255 if fill else 0, lineType=cv2.LINE_8, shift=_SHIFT)
    alpha = canvas.reshape(h, SUPERSAMPLE, w, SUPERSAMPLE).mean(axis=(1, 3), dtype=np.float32) / 255.0
    return alpha, int(x0), int(y0)
