"""Content and position masks for the global views (block-wise, cross-wise, random).

Every generator returns exactly ``n`` masked patches and terminates on any grid: shaped patterns are grown
with a bounded number of attempts, and whatever they cannot place is topped up with random patches.
"""
import math
from typing import Optional, Tuple

import numpy as np
from mmcv.transforms import BaseTransform
from mmpretrain.registry import TRANSFORMS

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


def block_mask(rng: np.random.Generator, h: int, w: int, n: int, min_num_patches: int = 4,
               aspect_range: Tuple[float, float] = (0.3, 1 / 0.3), max_attempts: int = 10) -> np.ndarray:
    """BEiT / DINOv2 block-wise masking: random rectangles (area >= ``min_num_patches``, aspect in
    ``aspect_range``) until ``n`` patches; a pass that adds nothing ends the loop (BEiT's own loop can
    spin forever on small grids) and the rest is topped up at random."""
    mask = np.zeros((h, w), dtype=bool)
    log_aspect = (math.log(aspect_range[0]), math.log(aspect_range[1]))
    count = 0
    while count < n:
        budget = n - count
        if budget < min_num_patches:
            break
        added = 0
        for _ in range(max_attempts):
            area = rng.uniform(min_num_patches, budget)
            aspect = math.exp(rng.uniform(*log_aspect))
            bh = int(round(math.sqrt(area * aspect)))
            bw = int(round(math.sqrt(area / aspect)))
            if not (0 < bh <= h and 0 < bw <= w):
                continue
            top = int(rng.integers(0, h - bh + 1))
            left = int(rng.integers(0, w - bw + 1))
            region = mask[top:top + bh, left:left + bw]
            new = bh * bw - int(region.sum())
            if 0 < new <= budget:
                region[...] = True
                added = new
                break
        if added == 0:
            break
        count += added
    return _top_up(rng, mask, n)


def cross_mask(rng: np.random.Generator, h: int, w: int, n: int) -> np.ndarray:
    """Cross-wise masking (decision, method.md section 2): crosses made of a 1-patch-thick horizontal and a
    vertical bar through a random unmasked centre, arm length ``L ~ U{1..max(1, min(h, w) // 2)}``,
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


@TRANSFORMS.register_module()
class PosFieldMaskGenerator(BaseTransform):
    """Content and position masks for the global views, mutually exclusive per view.

    Each global view is masked with probability ``mask_prob``; a masked view gets content masks with
    probability ``content_ratio`` (50:50 by default; 1.0 = content only, the DINOv2 baseline; 0.0 = position
    only), else position masks. Its ratio is drawn from ``U(ratio_range)`` and exactly
    ``round(ratio * N)`` patches are masked. Global views are the first ``num_global_views`` views (default:
    the leading views that share the first view's size).

    Outputs ``content_masks`` and ``pos_masks``: bool (G, h, w) with ``h, w = size // patch_size``.
    """

    def __init__(self, patch_size: int = 16, mask_prob: float = 0.5, ratio_range=(0.1, 0.5),
                 content_ratio: float = 0.5, content_mode: str = 'block', pos_mode: str = 'cross',
                 min_num_patches: int = 4, aspect_range=(0.3, 1 / 0.3), num_global_views: Optional[int] = None,
                 seed: Optional[int] = None):
        for name, mode in (('content_mode', content_mode), ('pos_mode', pos_mode)):
            if mode not in MASK_MODES:
                raise ValueError(f'{name} must be one of {MASK_MODES}, got {mode!r}')
        if not 0 <= ratio_range[0] <= ratio_range[1] <= 1:
            raise ValueError(f'ratio_range must satisfy 0 <= low <= high <= 1, got {ratio_range}')
        self.patch_size = patch_size
        self.mask_prob = mask_prob
        self.ratio_range = tuple(ratio_range)
        self.content_ratio = content_ratio
        self.content_mode = content_mode
        self.pos_mode = pos_mode
        self.block_kwargs = dict(min_num_patches=min_num_patches, aspect_range=tuple(aspect_range))
        self.num_global_views = num_global_views
        self._rng = np.random.default_rng(seed) if seed is not None else None

    def transform(self, results: dict) -> dict:
        views = results['img']
        if not isinstance(views, (list, tuple)):
            raise TypeError('PosFieldMaskGenerator must follow PosFieldMultiCrop (results["img"] is a list)')
        n_global = self.num_global_views
        if n_global is None:
            n_global = 1
            while n_global < len(views) and views[n_global].shape[:2] == views[0].shape[:2]:
                n_global += 1
        size_h, size_w = views[0].shape[:2]
        if size_h % self.patch_size or size_w % self.patch_size:
            raise ValueError(f'global view size {size_w}x{size_h} is not a multiple of patch_size={self.patch_size}')
        h, w = size_h // self.patch_size, size_w // self.patch_size
        rng = self._rng if self._rng is not None else np.random.default_rng(np.random.randint(2**31))
        content = np.zeros((n_global, h, w), dtype=bool)
        position = np.zeros((n_global, h, w), dtype=bool)
        for g in range(n_global):
            if rng.random() >= self.mask_prob:
                continue
            n = int(round(rng.uniform(*self.ratio_range) * h * w))
            if rng.random() < self.content_ratio:
                content[g] = make_mask(self.content_mode, rng, h, w, n, **self.block_kwargs)
            else:
                position[g] = make_mask(self.pos_mode, rng, h, w, n, **self.block_kwargs)
        results['content_masks'] = content
        results['pos_masks'] = position
        return results

    def __repr__(self):
        return (f'{self.__class__.__name__}(patch_size={self.patch_size}, mask_prob={self.mask_prob}, '
                f'ratio_range={self.ratio_range}, content_ratio={self.content_ratio}, '
                f'content_mode={self.content_mode!r}, pos_mode={self.pos_mode!r})')
