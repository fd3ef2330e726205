"""NMI, k-means, patch partitions and mean attention distance (projects/posfield/evaluation/attention_stats.py)."""
import itertools
import math

import numpy as np
import pytest
import torch

from projects.analysis.attention_stats import (
    attention_distance,
    cls_attention_features,
    cluster_nmi,
    entropy,
    kmeans,
    masks_to_patch_labels,
    nmi,
    patch_centres,
)


# ----------------------------------------------------------------------------------------------- NMI
def test_nmi_identical_partitions_is_one():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 7, 500)
    assert nmi(a, a) == pytest.approx(1.0)


def test_nmi_is_invariant_to_label_permutation():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 4, 300)
    b = np.where(rng.random(300) < 0.7, a, rng.integers(0, 4, 300))  # correlated, not identical
    perm = np.array([2, 0, 3, 1])
    assert 0.05 < nmi(a, b) < 0.95
    assert nmi(perm[a], b) == pytest.approx(nmi(a, b), abs=1e-12)
    assert nmi(a, perm[b] + 10) == pytest.approx(nmi(a, b), abs=1e-12)
    assert nmi(b, a) == pytest.approx(nmi(a, b), abs=1e-12)
    assert nmi(a, perm[a]) == pytest.approx(1.0)


def test_nmi_of_independent_random_partitions_is_near_zero():
    rng = np.random.default_rng(2)
    a, b = rng.integers(0, 5, 50000), rng.integers(0, 6, 50000)
    assert nmi(a, b) < 0.05


def test_nmi_matches_hand_computation():
    a, b = [0, 0, 1, 1], [0, 0, 0, 1]
    # p(a,b): (0,0)=1/2, (1,0)=1/4, (1,1)=1/4; p(a)=(1/2,1/2); p(b)=(3/4,1/4)
    mi = 0.5 * math.log(0.5 / (0.5 * 0.75)) + 0.25 * math.log(0.25 / (0.5 * 0.75)) \
        + 0.25 * math.log(0.25 / (0.5 * 0.25))
    ha, hb = math.log(2), -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert entropy(a) == pytest.approx(ha)
    assert nmi(a, b) == pytest.approx(mi / ((ha + hb) / 2))


def test_nmi_degenerate_partitions():
    assert nmi([3, 3, 3], [1, 1, 1]) == 1.0  # both one cluster
    assert nmi([0, 0, 0, 0], [0, 1, 0, 1]) == 0.0  # one cluster carries no information
    with pytest.raises(ValueError, match='same items'):
        nmi([0, 1], [0, 1, 1])


# ----------------------------------------------------------------------------------------------- k-means
def test_kmeans_recovers_separated_blobs_and_is_deterministic():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0., 0.], [10., 0.], [0., 10.]])
    x = torch.cat([c + 0.3 * torch.randn(40, 2, generator=g) for c in centres])
    truth = torch.arange(3).repeat_interleave(40)
    labels, found = kmeans(x, 3, seed=5)
    assert nmi(labels, truth) == pytest.approx(1.0)
    assert torch.equal(labels, kmeans(x, 3, seed=5)[0])
    assert found.shape == (3, 2)
    assert torch.cdist(found, centres).min(1).values.max() < 0.5


def test_kmeans_clips_k_to_distinct_points():
    x = torch.tensor([[0., 0.], [0., 0.], [1., 1.]])
    labels, centres = kmeans(x, 5)
    assert centres.shape[0] == 2 and labels[0] == labels[1] != labels[2]


# ----------------------------------------------------------------------------------------------- partitions
def test_masks_to_patch_labels_majority_cover():
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[0, :, :4] = True  # left half -> instance 1
    masks[1, :3, 4:] = True  # 3/4 of the top-right 4x4 patch -> instance 2; bottom-right stays background
    labels = masks_to_patch_labels(masks, (2, 2)).view(2, 2)
    assert labels.tolist() == [[1, 2], [1, 0]]
    assert masks_to_patch_labels(torch.zeros(0, 8, 8), (2, 2)).tolist() == [0, 0, 0, 0]


def test_cluster_nmi_uses_as_many_clusters_as_segments():
    gt = torch.tensor([0] * 10 + [1] * 10 + [2] * 10)
    feats = torch.nn.functional.one_hot(gt, 3).float() + 0.01 * torch.randn(30, 3)
    value, pred = cluster_nmi(feats, gt)
    assert value == pytest.approx(1.0) and int(pred.max()) == 2


def test_cls_attention_features_are_per_head_distributions():
    attn = torch.softmax(torch.randn(3, 1 + 6, 1 + 6), -1)
    f = cls_attention_features(attn, 1)
    assert f.shape == (6, 3)
    assert torch.allclose(f.sum(0), torch.ones(3), atol=1e-5)
    assert torch.allclose(f[:, 1] / f[:, 1].sum(), attn[1, 0, 1:] / attn[1, 0, 1:].sum(), atol=1e-6)


# ----------------------------------------------------------------------------------------------- distance
def _pairwise_mean_distance(h, w, p):
    """Mean over all ordered pairs (self included) of distances between patch centres, by brute force."""
    pts = [((c + 0.5) * p, (r + 0.5) * p) for r in range(h) for c in range(w)]
    total = sum(math.dist(a, b) for a, b in itertools.product(pts, pts))
    return total / len(pts) ** 2


def test_uniform_attention_distance_is_mean_pairwise_distance():
    h, w, p = 3, 4, 16
    n = h * w
    attn = torch.full((2, 5, 1 + n, 1 + n), 1.0 / (1 + n))  # uniform, [CLS] included (renormalised away)
    d = attention_distance(attn, (h, w), p, num_prefix_tokens=1)
    assert d.shape == (2, 5)
    assert torch.allclose(d, torch.full((2, 5), _pairwise_mean_distance(h, w, p), dtype=d.dtype), atol=1e-9)


def test_self_only_attention_has_zero_distance():
    h, w = 4, 4
    attn = torch.eye(1 + h * w).expand(1, 3, -1, -1).clone()
    attn[:, :, 1:, 0] = 0.3  # weight on [CLS] does not count as a distance
    assert torch.all(attention_distance(attn, (h, w), 8) == 0)


def test_attention_to_a_horizontal_neighbour_is_one_patch_away():
    h, w, p = 3, 5, 14
    n = h * w
    attn = torch.zeros(1, 1, n, n)
    for r in range(h):
        for c in range(w):
            attn[0, 0, r * w + c, r * w + (c + 1 if c + 1 < w else c - 1)] = 1.0
    assert torch.allclose(attention_distance(attn, (h, w), p, num_prefix_tokens=0), torch.tensor([[float(p)]],
                          dtype=torch.float64))


def test_patch_centres_and_shape_errors():
    c = patch_centres((2, 3), 10)
    assert c[0].tolist() == [5.0, 5.0] and c[-1].tolist() == [25.0, 15.0]
    with pytest.raises(ValueError, match='T = 1 \\+ 2\\*2'):
        attention_distance(torch.ones(1, 1, 4, 4), (2, 2), 8)
