"""The canvas placement: its draws stay inside the canvas with the image's aspect; its mean."""
import numpy as np
import pytest

from projects.posfield.batch.placement import DEFAULT_BETA, Placement, mean_placement, sample_placement


def test_placements():
    rng = np.random.default_rng(0)
    sides = []
    for mode in ('beta', 'uniform', 'const'):
        for _ in range(200):
            p = sample_placement(rng, mode)
            assert 0 <= p.ox and p.ox + p.s <= 1 + 1e-9 and 0 <= p.oy and p.oy + p.s <= 1 + 1e-9
            if mode == 'beta':
                sides.append(p.s)
    assert abs(np.mean(sides) - 2 / 7) < 0.05  # Beta(2, 5) mean
    assert mean_placement('beta') == Placement((1 - 2 / 7) / 2, (1 - 2 / 7) / 2, 2 / 7)
    p = Placement(0.1, 0.2, 0.5)
    # aspect kept: the 100 px edge spans s = 0.5 of the canvas, the 50 px edge 0.25
    assert np.allclose(p.image_box_to_canvas((0, 0, 100, 50), (100, 50)), [0.1, 0.2, 0.6, 0.45])
    assert np.allclose(p.image_box_to_canvas((50, 25, 100, 50), (100, 50)), [0.35, 0.325, 0.6, 0.45])
    for _ in range(100):  # a 1:3 portrait image stays inside the canvas with its aspect
        q = sample_placement(rng, 'beta', img_wh=(30, 90))
        box = q.image_box_to_canvas((0, 0, 30, 90), (30, 90))
        assert box.min() >= 0 and box.max() <= 1 + 1e-6
        assert (box[3] - box[1]) == pytest.approx(3 * (box[2] - box[0]), rel=1e-4)


def test_mean_placement_uses_the_one_beta_default_and_keeps_aspect():
    s = DEFAULT_BETA[0] / sum(DEFAULT_BETA)
    assert mean_placement() == Placement((1 - s) / 2, (1 - s) / 2, s)
    wide = mean_placement(img_wh=(200, 100))
    assert wide == Placement((1 - s) / 2, (1 - s / 2) / 2, s)
    box = wide.image_box_to_canvas((0, 0, 200, 100), (200, 100))
    assert (box[2] - box[0]) / (box[3] - box[1]) == pytest.approx(2.0)
