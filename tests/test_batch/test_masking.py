"""Masks: exact counts, exclusivity, termination on small grids, the per-image type, DINOv2's batch spread."""
import numpy as np
import pytest

from projects.posfield.batch.masking import batch_masks, block_mask, cross_mask, random_mask


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


def _batch(seed=0, images=8, n_global=2, grid=(8, 8), **kw):
    return batch_masks(np.random.default_rng(seed), images, n_global, grid, **kw)


def _types(content, position, images, n_global):
    """(n_global, images) array: 'c', 'p' or '' (unmasked), from view-major masks."""
    kind = np.full(images * n_global, '', dtype=object)
    kind[content.reshape(len(content), -1).any(1)] = 'c'
    kind[position.reshape(len(position), -1).any(1)] = 'p'
    return kind.reshape(n_global, images)


def test_mask_type_is_drawn_per_image():
    """All masked global views of an image share one type, 50:50 among the masked images."""
    seen = dict(c=0, p=0)
    for seed in range(40):
        c, p = _batch(seed, images=8, n_global=2, mask_prob=0.5)
        assert not (c & p).any()
        kinds = _types(c, p, 8, 2)
        masked_images = 0
        for image in range(8):
            types = set(kinds[:, image]) - {''}
            assert len(types) <= 1, f'image {image} mixes mask types across its global views: {kinds[:, image]}'
            if types:
                masked_images += 1
                seen[types.pop()] += 1
        n_content = sum(set(kinds[:, i]) - {''} == {'c'} for i in range(8))
        assert abs(n_content - masked_images / 2) <= 0.5  # split exactly (a half rounded at random)
    assert seen['c'] > 0 and seen['p'] > 0


def test_mask_unit_view_mixes_types_within_an_image():
    mixed = 0
    for seed in range(40):
        c, p = _batch(seed, images=4, n_global=2, mask_prob=1.0, mask_unit='view')
        kinds = _types(c, p, 4, 2)
        mixed += sum(set(kinds[:, i]) == {'c', 'p'} for i in range(4))
    assert mixed > 0


def test_dinov2_count_and_ratio_spread():
    """Exactly int(views * mask_prob) masked views, one ratio per equal sub-interval of the range."""
    h, w = 10, 10
    for seed in range(10):
        c, p = _batch(seed, images=5, n_global=2, grid=(h, w), mask_prob=0.5, ratio_range=(0.1, 0.5))
        counts = np.sort((c | p).reshape(10, -1).sum(1))
        masked = counts[counts > 0]
        assert len(masked) == 5
        edges = np.linspace(0.1, 0.5, 6)
        for n, lo, hi in zip(masked, edges[:-1], edges[1:]):
            assert int(lo * h * w) <= n <= int(hi * h * w)


def test_content_ratio_extremes_and_errors():
    c, p = _batch(0, mask_prob=0.0)
    assert not c.any() and not p.any()
    c, p = _batch(0, mask_prob=1.0, content_ratio=1.0)
    assert not p.any() and c.reshape(16, -1).any(1).all()
    c, p = _batch(0, mask_prob=1.0, content_ratio=0.0)
    assert not c.any() and p.reshape(16, -1).any(1).all()
    with pytest.raises(ValueError, match='pos_mode'):
        _batch(0, pos_mode='diagonal')
    with pytest.raises(ValueError, match='mask_unit'):
        _batch(0, mask_unit='batch')


def _isolated(mask: np.ndarray) -> int:
    """Masked patches with no masked 4-neighbour."""
    padded = np.pad(mask, 1)
    neighbours = padded[:-2, 1:-1] | padded[2:, 1:-1] | padded[1:-1, :-2] | padded[1:-1, 2:]
    return int((mask & ~neighbours).sum())


def test_block_masks_are_blocks_as_dinov2s_over_2000_masks():
    """DINOv2's MaskingGenerator keeps placing (smaller) rectangles when fewer than min_num_patches remain, so
    its masks are made of blocks to the last patch; only the top-up to the exact count is scattered."""
    rng = np.random.default_rng(0)
    masked = isolated = 0
    for _ in range(2000):
        n = int(14 * 14 * rng.uniform(0.1, 0.5))  # DINOv2's per-view count
        mask = block_mask(rng, 14, 14, n)
        masked += int(mask.sum())
        isolated += _isolated(mask)
    assert isolated / masked < 0.005


def test_a_block_is_strictly_smaller_than_the_grid():
    """MaskingGenerator._mask accepts a rectangle only if ``h < height`` and ``w < width``."""
    from projects.posfield.batch.masking import add_block
    rng = np.random.default_rng(1)
    for _ in range(2000):
        mask = np.zeros((14, 14), dtype=bool)
        added = add_block(rng, mask, int(rng.integers(4, 197)))
        rows, cols = np.nonzero(mask)
        assert added == len(rows)
        if added:
            assert rows.max() - rows.min() + 1 < 14 and cols.max() - cols.min() + 1 < 14
