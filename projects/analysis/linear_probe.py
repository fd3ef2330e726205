"""Linear probe: multinomial logistic regression trained with torch on frozen features.

Features are standardised with the training set's mean and std. One linear classifier per learning rate
in ``lrs`` is trained at once (as DINOv2's linear evaluation does); the learning rate is chosen on a held-out
``holdout`` fraction of the *training* features, never on the evaluation set, and the chosen classifier's
accuracy on the evaluation set is reported. SGD with momentum 0.9, cosine schedule, cross-entropy.
"""
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .knn import topk_accuracy


def _split_holdout(n: int, holdout: float, gen: torch.Generator):
    perm = torch.randperm(n, generator=gen)
    n_hold = int(round(n * holdout))
    if n_hold < 1 or n - n_hold < 1:
        return perm, None
    return perm[n_hold:], perm[:n_hold]


def train_linear_probe(train_feats: torch.Tensor, train_labels: torch.Tensor, val_feats: torch.Tensor,
                       val_labels: torch.Tensor, num_classes: int,
                       lrs: Sequence[float] = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3),
                       epochs: int = 100, batch_size: int = 256, weight_decay: float = 0.0,
                       holdout: float = 0.1, seed: int = 0, device: Optional[str] = None,
                       progress: bool = False) -> Dict[str, object]:
    """Train the probe and return ``top1`` / ``top5`` on the evaluation set, the chosen ``lr`` and, per
    learning rate, the hold-out and evaluation accuracies (for transparency).

    With too few training samples for a hold-out split the learning rate is chosen by training loss.
    """
    if train_feats.shape[0] != train_labels.shape[0] or val_feats.shape[0] != val_labels.shape[0]:
        raise ValueError('features and labels must have the same number of rows')
    if train_feats.shape[1] != val_feats.shape[1]:
        raise ValueError(f'train features have {train_feats.shape[1]} dims, evaluation {val_feats.shape[1]}')
    device = torch.device(device or ('cuda' if train_feats.is_cuda else 'cpu'))
    gen = torch.Generator().manual_seed(seed)
    x_all = train_feats.float().to(device)
    y_all = train_labels.long().to(device)
    fit_idx, hold_idx = _split_holdout(x_all.shape[0], holdout, gen)
    fit_idx = fit_idx.to(device)
    mu = x_all[fit_idx].mean(0, keepdim=True)
    sd = x_all[fit_idx].std(0, keepdim=True).clamp(min=1e-6) if fit_idx.numel() > 1 else torch.ones_like(mu)
    norm = lambda x: (x.float().to(device) - mu) / sd  # noqa: E731

    x_fit, y_fit = norm(x_all[fit_idx]), y_all[fit_idx]
    torch.manual_seed(seed)
    heads = nn.ModuleList(nn.Linear(x_fit.shape[1], num_classes) for _ in lrs).to(device)
    for h in heads:
        nn.init.normal_(h.weight, std=0.01)
        nn.init.zeros_(h.bias)
    opt = torch.optim.SGD([dict(params=h.parameters(), lr=lr) for h, lr in zip(heads, lrs)], momentum=0.9,
                          weight_decay=weight_decay)
    steps_per_epoch = max((x_fit.shape[0] + batch_size - 1) // batch_size, 1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    bar = range(epochs)
    if progress:
        from tqdm import tqdm
        bar = tqdm(bar, desc='linear probe', unit='epoch', leave=False)
    losses = torch.zeros(len(lrs))
    for _ in bar:
        perm = torch.randperm(x_fit.shape[0], generator=gen).to(device)
        losses.zero_()
        for s in range(steps_per_epoch):
            idx = perm[s * batch_size:(s + 1) * batch_size]
            xb, yb = x_fit[idx], y_fit[idx]
            per_head = torch.stack([F.cross_entropy(h(xb), yb) for h in heads])
            opt.zero_grad(set_to_none=True)
            per_head.sum().backward()  # heads are independent: the sum trains each on its own loss
            opt.step()
            sched.step()
            losses += per_head.detach().cpu() * len(idx)
    losses /= x_fit.shape[0]

    with torch.no_grad():
        xv, yv = norm(val_feats), val_labels.long().to(device)
        val_acc = [topk_accuracy(h(xv), yv) for h in heads]
        if hold_idx is not None:
            hold_idx = hold_idx.to(device)
            xh, yh = norm(x_all[hold_idx]), y_all[hold_idx]
            hold_acc = [topk_accuracy(h(xh), yh)['top1'] for h in heads]
            best = max(range(len(lrs)), key=lambda i: (hold_acc[i], -float(losses[i])))
        else:
            hold_acc = [None] * len(lrs)
            best = int(losses.argmin())
    return dict(top1=val_acc[best]['top1'], top5=val_acc[best]['top5'], lr=float(lrs[best]),
                selected_by='holdout' if hold_idx is not None else 'train_loss',
                per_lr=[dict(lr=float(lr), holdout_top1=hold_acc[i], val_top1=val_acc[i]['top1'],
                             train_loss=float(losses[i])) for i, lr in enumerate(lrs)])
