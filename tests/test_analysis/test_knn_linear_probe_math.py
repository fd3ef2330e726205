"""Weighted k-NN (DINO) and the torch linear probe on toy features."""
import torch
import torch.nn.functional as F

from projects.analysis.knn import knn_classify, knn_scores, topk_accuracy
from projects.analysis.linear_probe import train_linear_probe


def test_knn_on_one_hot_class_features_is_perfect():
    g = torch.Generator().manual_seed(0)
    train_y = torch.randint(0, 5, (200,), generator=g)
    test_y = torch.randint(0, 5, (50,), generator=g)
    acc = knn_classify(F.one_hot(train_y, 5).float(), train_y, F.one_hot(test_y, 5).float(), test_y, 5, k=20)
    assert acc['top1'] == 100.0 and acc['top5'] == 100.0


def test_knn_vote_is_weighted_by_exp_similarity_over_temperature():
    # One very close neighbour of class 1 and two slightly farther of class 0.
    train = torch.tensor([[1.0, 0.0], [0.9, 0.4359], [0.9, -0.4359]])  # cosine 1.0, 0.9, 0.9 to the query
    labels = torch.tensor([1, 0, 0])
    query = torch.tensor([[1.0, 0.0]])
    sharp = knn_scores(train, labels, query, 2, ks=(3,), temperature=0.07)[3]
    flat = knn_scores(train, labels, query, 2, ks=(3,), temperature=100.0)[3]
    assert sharp.argmax(1).item() == 1  # e^(1/0.07) > 2 e^(0.9/0.07)
    assert flat.argmax(1).item() == 0  # nearly a plain majority vote
    assert torch.allclose(sharp[0, 1], torch.exp(torch.tensor(1.0 / 0.07)), rtol=1e-4)
    k1 = knn_scores(train, labels, query, 2, ks=(1,), temperature=100.0)[1]
    assert k1.argmax(1).item() == 1  # k=1: only the nearest votes


def test_topk_accuracy():
    scores = torch.tensor([[0.1, 0.9, 0.0], [0.5, 0.3, 0.2]])
    acc = topk_accuracy(scores, torch.tensor([1, 1]), topk=(1, 2))
    assert acc == {'top1': 50.0, 'top2': 100.0}


def test_linear_probe_learns_a_separable_toy_set():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(16, 4, generator=g)

    def make(n):
        x = torch.randn(n, 16, generator=g) * 3 + 5  # offset and scale: the probe standardises
        return x, (x @ w).argmax(1)
    xt, yt = make(600)
    xv, yv = make(200)
    res = train_linear_probe(xt, yt, xv, yv, 4, epochs=60, batch_size=64)
    assert res['top1'] >= 95.0
    assert res['selected_by'] == 'holdout' and res['lr'] in [r['lr'] for r in res['per_lr']]
    chosen = next(r for r in res['per_lr'] if r['lr'] == res['lr'])
    assert chosen['holdout_top1'] == max(r['holdout_top1'] for r in res['per_lr'])


def test_linear_probe_on_random_labels_is_near_chance():
    g = torch.Generator().manual_seed(1)
    xt, yt = torch.randn(400, 8, generator=g), torch.randint(0, 4, (400,), generator=g)
    xv, yv = torch.randn(400, 8, generator=g), torch.randint(0, 4, (400,), generator=g)
    assert train_linear_probe(xt, yt, xv, yv, 4, epochs=20)['top1'] < 40.0
