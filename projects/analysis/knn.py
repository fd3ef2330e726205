"""Weighted k-NN classification on frozen features, as in DINO (Caron et al., 2021, eval_knn.py).

Features are L2-normalised; a test sample's ``k`` nearest training samples (cosine similarity ``s``) vote
for their class with weight ``exp(s / T)``; the class with the largest summed weight wins.
"""
from typing import Dict, Iterable, Sequence

import torch
import torch.nn.functional as F


@torch.no_grad()
def knn_scores(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor,
               num_classes: int, ks: Sequence[int] = (20,), temperature: float = 0.07,
               chunk: int = 256) -> Dict[int, torch.Tensor]:
    """Class scores ``(N_test, C)`` for every ``k`` in ``ks`` (one similarity pass serves all of them)."""
    if train_feats.ndim != 2 or test_feats.ndim != 2 or train_feats.shape[1] != test_feats.shape[1]:
        raise ValueError(f'features must be (N, D) with the same D: train {tuple(train_feats.shape)}, '
                         f'test {tuple(test_feats.shape)}')
    if train_labels.shape[0] != train_feats.shape[0]:
        raise ValueError(f'{train_feats.shape[0]} training features but {train_labels.shape[0]} labels')
    ks = [int(k) for k in ks]
    if min(ks) < 1:
        raise ValueError(f'k must be >= 1, got {ks}')
    train = F.normalize(train_feats.float(), dim=1)
    test = F.normalize(test_feats.float(), dim=1)
    labels = train_labels.long().to(train.device)
    kmax = min(max(ks), train.shape[0])
    scores = {k: [] for k in ks}
    for start in range(0, test.shape[0], chunk):
        sim = test[start:start + chunk] @ train.t()  # (n, N_train)
        top_sim, top_idx = sim.topk(kmax, dim=1)  # sorted, most similar first
        votes = F.one_hot(labels[top_idx], num_classes).float() * (top_sim / temperature).exp().unsqueeze(-1)
        for k in ks:
            scores[k].append(votes[:, :min(k, kmax)].sum(1))
    return {k: torch.cat(v) for k, v in scores.items()}


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, topk: Iterable[int] = (1, 5)) -> Dict[str, float]:
    """Top-k accuracies in percent (a k larger than the number of classes counts every sample correct)."""
    labels = labels.long().to(scores.device)
    out = {}
    for k in topk:
        kk = min(int(k), scores.shape[1])
        hit = (scores.topk(kk, dim=1).indices == labels[:, None]).any(1)
        out[f'top{k}'] = 100.0 * float(hit.float().mean())
    return out


def knn_classify(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor,
                 test_labels: torch.Tensor, num_classes: int, k: int = 20,
                 temperature: float = 0.07) -> Dict[str, float]:
    """``{'top1': %, 'top5': %}`` of the DINO weighted k-NN classifier."""
    scores = knn_scores(train_feats, train_labels, test_feats, num_classes, (k,), temperature)[k]
    return topk_accuracy(scores, test_labels)
