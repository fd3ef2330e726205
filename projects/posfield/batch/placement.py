"""Where a source image sits on the position field's canvas: the placement, its random draw ("position and scale
augmentation", drawn per image when a batch is built) and its mean (detection and analysis inputs).

A :class:`Placement` is an offset ``(ox, oy)`` and a side ``s``, all as fractions of the canvas; the image keeps
its aspect ratio. A crop of the image is then a box on the canvas (:func:`place_boxes`).

This module imports only torch and numpy, so the mmdet-side backbone can reuse it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

PLACEMENT_MODES = ('beta', 'uniform', 'const')
# The paper's placement ("position and scale augmentation"): side s ~ Beta(2, 5). Stated once, here; the
# batch's collate function, the mean placement and the detector's 'mean' option all default to it.
DEFAULT_BETA: Tuple[float, float] = (2.0, 5.0)
DEFAULT_PLACEMENT = dict(mode='beta', beta=DEFAULT_BETA)


@dataclass(frozen=True)
class Placement:
    """Where a source image sits on the field canvas (fractions of the canvas side).

    The image keeps its aspect ratio: its LONGER edge spans ``s`` of the canvas and its shorter edge
    ``s * short / long``, starting at ``(ox, oy)``: the convention of detection, where an image sits
    inside a padded square.
    """
    ox: float
    oy: float
    s: float

    def image_box_to_canvas(self, box: Sequence[float], img_wh: Tuple[int, int]) -> np.ndarray:
        """Map a pixel box ``(x0, y0, x1, y1)`` of a ``img_wh`` source image to canvas coordinates."""
        scale = self.s / max(img_wh)
        x0, y0, x1, y1 = box
        return np.array([self.ox + scale * x0, self.oy + scale * y0, self.ox + scale * x1, self.oy + scale * y1],
                        dtype=np.float32)

    def as_array(self) -> np.ndarray:
        return np.array([self.ox, self.oy, self.s], dtype=np.float32)


def _extent(s: float, img_wh: Optional[Tuple[int, int]]) -> Tuple[float, float]:
    """Canvas width and height of an image of side ``s`` (longer edge) with its aspect kept."""
    if img_wh is None:
        return s, s
    w, h = img_wh
    return s * w / max(w, h), s * h / max(w, h)


def _check_mode(mode: str) -> None:
    if mode not in PLACEMENT_MODES:
        raise ValueError(f'placement mode must be one of {PLACEMENT_MODES}, got {mode!r}')


def sample_placement(rng: np.random.Generator, mode: str = 'beta', beta: Tuple[float, float] = DEFAULT_BETA,
                     scale_range: Tuple[float, float] = (0.0, 1.0),
                     img_wh: Optional[Tuple[int, int]] = None) -> Placement:
    """Draw one canvas placement for a source image ("position and scale augmentation").

    ``beta``: side ``s ~ Beta(a, b)``; ``uniform``: ``s ~ U(scale_range)``; ``const``: the image's longer
    edge spans the whole canvas, from the top-left corner (as a detection image in its padded square).
    The offset is uniform over positions that keep the image (aspect kept, ``img_wh``; square when None)
    inside the canvas. The side is clipped to ``[1e-3, 1]`` so a degenerate draw cannot give an empty box.
    """
    _check_mode(mode)
    if mode == 'const':
        return Placement(0.0, 0.0, 1.0)
    s = float(rng.beta(*beta)) if mode == 'beta' else float(rng.uniform(*scale_range))
    s = min(max(s, 1e-3), 1.0)
    ew, eh = _extent(s, img_wh)
    return Placement(float(rng.uniform(0, 1 - ew)), float(rng.uniform(0, 1 - eh)), s)


def mean_placement(mode: str = 'beta', beta: Tuple[float, float] = DEFAULT_BETA,
                   scale_range: Tuple[float, float] = (0.0, 1.0),
                   img_wh: Optional[Tuple[int, int]] = None) -> Placement:
    """The expected placement (mean side, centred; aspect kept for ``img_wh``): an option for detection
    and analysis inputs."""
    _check_mode(mode)
    if mode == 'const':
        return Placement(0.0, 0.0, 1.0)
    s = beta[0] / (beta[0] + beta[1]) if mode == 'beta' else 0.5 * (scale_range[0] + scale_range[1])
    ew, eh = _extent(s, img_wh)
    return Placement((1 - ew) / 2, (1 - eh) / 2, s)


def place_boxes(crop_boxes: torch.Tensor, img_hw: torch.Tensor, placements: torch.Tensor) -> torch.Tensor:
    """Canvas boxes of crops: ``crop_boxes`` ``(..., 4)`` as fractions of their source image, ``img_hw``
    ``(..., 2)`` the source size, ``placements`` ``(..., 3)`` = ``(ox, oy, s)`` (aspect kept, as
    :meth:`Placement.image_box_to_canvas`). Leading dimensions broadcast."""
    hw = img_hw.float()
    longer = hw.max(dim=-1, keepdim=True).values
    ext_w, ext_h = (hw[..., 1:2] / longer), (hw[..., 0:1] / longer)
    ox, oy, s = placements[..., 0:1], placements[..., 1:2], placements[..., 2:3]
    scale = torch.cat([s * ext_w, s * ext_h, s * ext_w, s * ext_h], dim=-1)
    offset = torch.cat([ox, oy, ox, oy], dim=-1)
    return offset + scale * crop_boxes.float()
