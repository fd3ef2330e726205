"""Masks: exact counts, exclusivity, termination on small grids."""
import numpy as np
import pytest

from projects.posfield.datasets.transforms import (PosFieldMaskGenerator, block_mask, cross_mask,
                                                   random_mask)


@pytest.mark.parametrize('fn', [block_mask, cross_mask, random_mask])
@pytest.mark.parametrize('hw', [(6, 6), (14, 14), (4, 9)])
def test_exact_counts(fn, hw):
    rng = np.random.default_rng(0)
    h, w = hw
    for n in range(0, h * w + 1, max(1, h * w // 12)):
        mask = fn(rng, h, w, n)
        assert mask.shape == (h, w) and mask.dtype == bool
        assert int(mask.sum()) == n


def test_terminates_on_6x6_with_unreachable_rectangles():
    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(0, 19))  # up to 0.5 of 36
        assert block_mask(rng, 6, 6, n, min_num_patches=30).sum() == n  # no rectangle fits the budget
        assert cross_mask(rng, 6, 6, n).sum() == n


def test_cross_mask_is_made_of_bars():
    rng = np.random.default_rng(2)
    mask = cross_mask(rng, 14, 14, 9)
    # every masked cell has a masked neighbour in its row or column (a bar), except a lone centre
    rows, cols = np.nonzero(mask)
    neighbours = [mask[max(r - 1, 0):r + 2, c].sum() + mask[r, max(c - 1, 0):c + 2].sum() - 2 for r, c in
                  zip(rows, cols)]
    assert sum(n > 0 for n in neighbours) >= len(rows) - 1


def _views(g=2, size=64, locals_=2, lsize=32):
    return [np.zeros((size, size, 3), np.uint8)] * g + [np.zeros((lsize, lsize, 3), np.uint8)] * locals_


def test_generator_exclusive_and_only_globals():
    gen = PosFieldMaskGenerator(patch_size=8, mask_prob=1.0, ratio_range=(0.1, 0.5), seed=0)
    seen_content = seen_pos = 0
    for _ in range(100):
        out = gen(dict(img=_views()))
        c, p = out['content_masks'], out['pos_masks']
        assert c.shape == p.shape == (2, 8, 8)
        assert not (c.reshape(2, -1).any(1) & p.reshape(2, -1).any(1)).any()  # never both in one view
        for g in range(2):
            n = max(c[g].sum(), p[g].sum())
            assert 0.1 * 64 - 0.5 <= n <= 0.5 * 64 + 0.5
        seen_content += c.any(axis=(1, 2)).sum()
        seen_pos += p.any(axis=(1, 2)).sum()
    assert 60 < seen_content < 140 and 60 < seen_pos < 140  # 50:50 among masked views


def test_generator_probabilities_and_ratios():
    out = PosFieldMaskGenerator(patch_size=8, mask_prob=0.0, seed=0)(dict(img=_views()))
    assert not out['content_masks'].any() and not out['pos_masks'].any()
    gen = PosFieldMaskGenerator(patch_size=8, mask_prob=1.0, content_ratio=1.0, seed=0)
    for _ in range(20):
        out = gen(dict(img=_views()))
        assert not out['pos_masks'].any() and out['content_masks'].any(axis=(1, 2)).all()
    with pytest.raises(ValueError, match='pos_mode'):
        PosFieldMaskGenerator(pos_mode='diagonal')
    with pytest.raises(ValueError, match='patch_size'):
        PosFieldMaskGenerator(patch_size=7)(dict(img=_views()))
