"""Content and position masks for the global views of a batch (block-wise, cross-wise, random).

Every generator returns exactly ``n`` masked patches and terminates on any grid: shaped patterns are grown
with a bounded number of attempts, and whatever they cannot place is topped up with random patches.
"""
import math
from typing import Tuple

import numpy as np

MASK_MODES = ('block', 'cross', 'random')


def _top_up(rng: np.random.Generator, mask: np.ndarray, n: int) -> np.ndarray:
    missing = n - int(mask.sum())
    if missing > 0:
        free = np.flatnonzero(~mask.ravel())
        mask.ravel()[rng.choice(free, size=missing, replace=False)] = True
    return mask


def random_mask(rng: np.random.Generator, h: int, w: int, n: int) -> np.ndarray:
    """``n`` patches chosen uniformly."""
    return _top_up(rng, np.zeros((h, w), dtype=bool), n)


def add_block(rng: np.random.Generator, mask: np.ndarray, budget: int, min_num_patches: int = 4,
              aspect_range: Tuple[float, float] = (0.3, 1 / 0.3), max_attempts: int = 10) -> int:
    """One step of DINOv2's ``MaskingGenerator._mask``: up to ``max_attempts`` random rectangles (area drawn
    between ``min_num_patches`` and ``budget``, either order, aspect log-uniform in ``aspect_range``, strictly
    smaller than the grid in both directions); the first that adds between 1 and ``budget`` new patches is
    masked in place. Returns the number of patches added (0: none fitted)."""
    h, w = mask.shape
    log_aspect = (math.log(aspect_range[0]), math.log(aspect_range[1]))
    for _ in range(max_attempts):
        area = min_num_patches + (budget - min_num_patches) * rng.random()  # Python's uniform(a, b): any order
        aspect = math.exp(rng.uniform(*log_aspect))
        bh = int(round(math.sqrt(area * aspect)))
        bw = int(round(math.sqrt(area / aspect)))
        if not (0 < bh < h and 0 < bw < w):
            continue
        top = int(rng.integers(0, h - bh + 1))
        left = int(rng.integers(0, w - bw + 1))
        region = mask[top:top + bh, left:left + bw]
        new = bh * bw - int(region.sum())
        if 0 < new <= budget:
            region[...] = True
            return new
    return 0


def block_mask(rng: np.random.Generator, h: int, w: int, n: int, min_num_patches: int = 4,
               aspect_range: Tuple[float, float] = (0.3, 1 / 0.3), max_attempts: int = 10) -> np.ndarray:
    """BEiT / DINOv2 block-wise masking (``MaskingGenerator``): rectangles (:func:`add_block`) until ``n``
    patches or a step that adds nothing (when fewer than ``min_num_patches`` remain, the area is drawn below
    ``min_num_patches``, as DINOv2's ``uniform(min, budget)`` does). DINOv2 then stops short (about 0.1 % of the
    patches on a 14 x 14 grid); the remainder is topped up at random here so the count is exact."""
    mask = np.zeros((h, w), dtype=bool)
    count = 0
    while count < n:
        added = add_block(rng, mask, n - count, min_num_patches, aspect_range, max_attempts)
        if added == 0:
            break
        count += added
    return _top_up(rng, mask, n)


def cross_mask(rng: np.random.Generator, h: int, w: int, n: int) -> np.ndarray:
    """Cross-wise masking (docs/posfield.md, "Cross-wise position masks"): crosses made of a 1-patch-thick
    horizontal and a vertical bar through a random unmasked centre, arm length ``L ~ U{1..max(1, min(h, w) // 2)}``,
    clipped to the grid, until ``n`` patches. The last cross is cut to fit: its cells are added nearest
    to its centre first, so it stays a (smaller) cross. Each cross adds at least its centre, so this
    terminates after at most ``n`` crosses."""
    mask = np.zeros((h, w), dtype=bool)
    max_arm = max(1, min(h, w) // 2)
    count = 0
    while count < n:
        free = np.flatnonzero(~mask.ravel())
        r, c = divmod(int(rng.choice(free)), w)
        arm = int(rng.integers(1, max_arm + 1))
        cells = [(r, c)]
        for d in range(1, arm + 1):
            cells += [(r, c - d), (r, c + d), (r - d, c), (r + d, c)]
        for rr, cc in cells:
            if count >= n:
                break
            if 0 <= rr < h and 0 <= cc < w and not mask[rr, cc]:
                mask[rr, cc] = True
                count += 1
    return mask


def make_mask(mode: str, rng: np.random.Generator, h: int, w: int, n: int, **block_kwargs) -> np.ndarray:
    if mode == 'block':
        return block_mask(rng, h, w, n, **block_kwargs)
    if mode == 'cross':
        return cross_mask(rng, h, w, n)
    if mode == 'random':
        return random_mask(rng, h, w, n)
    raise ValueError(f'mask mode must be one of {MASK_MODES}, got {mode!r}')


MASK_UNITS = ('image', 'view')


def batch_masks(rng: np.random.Generator, n_images: int, n_global: int, grid_hw: Tuple[int, int],
                mask_prob: float = 0.5, ratio_range: Tuple[float, float] = (0.1, 0.5), content_ratio: float = 0.5,
                content_mode: str = 'block', pos_mode: str = 'cross', mask_unit: str = 'image',
                **block_kwargs) -> Tuple[np.ndarray, np.ndarray]:
    """Content and position masks for the ``n_global * n_images`` global views of a batch (view-major:
    view ``v`` belongs to image ``v % n_images``), mutually exclusive per view.

    Which views are masked and their ratios follow DINOv2's ``collate_data_and_cast``: exactly
    ``int(views * mask_prob)`` views are masked, their ratios spread over ``ratio_range`` (one draw in each
    of ``n`` equal sub-intervals), assigned to views at random, ``int(ratio * h * w)`` patches each.
    The mask TYPE is drawn per ``mask_unit``: ``'image'`` (default; all masked global views of an image share
    one type) or ``'view'``. ``content_ratio`` of the masked units get content masks, the rest position
    masks (1.0 = content only, the DINOv2 baseline; 0.0 = position only); a fractional count is rounded up
    or down at random so the split is exact in expectation.

    Returns ``content, position``: bool ``(n_global * n_images, h, w)``.
    """
    for name, mode in (('content_mode', content_mode), ('pos_mode', pos_mode)):
        if mode not in MASK_MODES:
            raise ValueError(f'{name} must be one of {MASK_MODES}, got {mode!r}')
    if mask_unit not in MASK_UNITS:
        raise ValueError(f'mask_unit must be one of {MASK_UNITS}, got {mask_unit!r}')
    if not 0 <= ratio_range[0] <= ratio_range[1] <= 1:
        raise ValueError(f'ratio_range must satisfy 0 <= low <= high <= 1, got {tuple(ratio_range)}')
    if not (0 <= mask_prob <= 1 and 0 <= content_ratio <= 1):
        raise ValueError(f'mask_prob and content_ratio must lie in [0, 1], got {mask_prob}, {content_ratio}')
    h, w = grid_hw
    n_views = n_images * n_global
    content = np.zeros((n_views, h, w), dtype=bool)
    position = np.zeros((n_views, h, w), dtype=bool)
    n_masked = int(n_views * mask_prob)
    if n_masked == 0:
        return content, position
    edges = np.linspace(ratio_range[0], ratio_range[1], n_masked + 1)
    ratios = rng.uniform(edges[:-1], edges[1:])
    masked = rng.permutation(n_views)[:n_masked]
    units = masked % n_images if mask_unit == 'image' else masked
    candidates = np.unique(units)
    share = len(candidates) * content_ratio
    n_content = int(share) + int(rng.random() < share - int(share))
    content_units = set(rng.permutation(candidates)[:n_content].tolist())
    for view, unit, ratio in zip(masked.tolist(), units.tolist(), ratios.tolist()):
        n = int(ratio * h * w)
        if unit in content_units:
            content[view] = make_mask(content_mode, rng, h, w, n, **block_kwargs)
        else:
            position[view] = make_mask(pos_mode, rng, h, w, n, **block_kwargs)
    return content, position
