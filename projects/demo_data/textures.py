"""Object appearance: a patch of another real photo, a solid colour or a two-colour gradient, with noise and
a shading ramp, so that colour alone does not give the objects away."""
import colorsys
from typing import Callable, Optional

import cv2
import numpy as np

# probabilities of the three appearance modes
MODES = (('photo', 0.5), ('solid', 0.25), ('gradient', 0.25))


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.2, 1.0), rng.uniform(0.2, 1.0))
    return np.array([r, g, b], np.float32) * 255


def _photo_patch(photo: np.ndarray, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    ph, pw = photo.shape[:2]
    scale = rng.uniform(0.15, 0.6) * min(ph, pw) / max(h, w)  # source pixels per output pixel
    ch, cw = min(ph, max(2, round(h * scale))), min(pw, max(2, round(w * scale)))
    y, x = rng.integers(0, ph - ch + 1), rng.integers(0, pw - cw + 1)
    patch = photo[y:y + ch, x:x + cw]
    patch = np.rot90(patch, int(rng.integers(4)))
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    return cv2.resize(np.ascontiguousarray(patch), (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)


def make_texture(h: int, w: int, rng: np.random.Generator,
                 get_photo: Optional[Callable[[np.random.Generator], np.ndarray]] = None) -> np.ndarray:
    """``(h, w, 3)`` float32 RGB in [0, 255]. ``get_photo(rng)`` returns an RGB uint8 photo to cut from;
    without it the photo mode falls back to colours."""
    mode = rng.choice([m for m, _ in MODES], p=[p for _, p in MODES])
    if mode == 'photo' and get_photo is not None:
        tex = _photo_patch(get_photo(rng), h, w, rng)
        tex = (tex - tex.mean()) * rng.uniform(0.8, 1.3) + tex.mean() + rng.uniform(-30, 30, 3)  # contrast, tint
    elif mode == 'gradient':
        a, b = _random_colour(rng), _random_colour(rng)
        t = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        ramp = xx * np.cos(t) + yy * np.sin(t)
        ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1.0)
        tex = a + ramp[..., None] * (b - a)
    else:
        tex = np.broadcast_to(_random_colour(rng), (h, w, 3)).astype(np.float32)
    # shading ramp (lit from a random side) and sensor-like noise
    t = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = (xx - w / 2) * np.cos(t) + (yy - h / 2) * np.sin(t)
    tex = tex * (1 + rng.uniform(0.0, 0.35) * ramp[..., None] / max(h, w))
    tex = tex + rng.normal(0, rng.uniform(2, 12), (h, w, 1 if rng.random() < 0.5 else 3))
    return np.clip(tex, 0, 255).astype(np.float32)
