"""The maths behind the attention analyses (docs/analysis.md), free of models and files.

Definitions (also in docs/analysis.md):

* **NMI** of two partitions ``U``, ``V`` of the same ``n`` items: ``I(U; V) / ((H(U) + H(V)) / 2)`` (natural
  logarithms, the "arithmetic" normalisation, as scikit-learn's default). Two one-cluster partitions have
  NMI 1 by convention; a one-cluster partition against any other has NMI 0.
* **Patch partition of an image's instances**: every patch gets the label of whichever of background and
  the instances covers most of its area (ties go to the lower label, i.e. background first).
* **Attention clusters**: the patch tokens' features (default: the [CLS] query's attention to the patch in
  each head of the last block) clustered by k-means; the clusters are compared with the instance
  partition by NMI.
* **Mean attention distance** of a head: ``sum_j a_ij * ||c_i - c_j||`` averaged over the patch queries
  ``i``, where ``a_ij`` is the attention of patch ``i`` to patch ``j`` renormalised over the patch keys
  (the prefix tokens, e.g. [CLS], left out) and ``c`` are patch centres in input pixels.
"""
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

ArrayLike = Union[np.ndarray, torch.Tensor, Sequence[int]]


def _as_labels(x: ArrayLike, name: str) -> np.ndarray:
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    arr = arr.reshape(-1)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise ValueError(f'{name} must hold integer cluster labels, got dtype {arr.dtype}')
        arr = arr.astype(np.int64)
    return arr


def entropy(labels: ArrayLike) -> float:
    """Shannon entropy (nats) of the partition given by ``labels``."""
    lab = _as_labels(labels, 'labels')
    if lab.size == 0:
        return 0.0
    _, counts = np.unique(lab, return_counts=True)
    p = counts / lab.size
    return float(-(p * np.log(p)).sum())


def mutual_information(labels_a: ArrayLike, labels_b: ArrayLike) -> float:
    """Mutual information (nats) between two partitions of the same items."""
    a, b = _as_labels(labels_a, 'labels_a'), _as_labels(labels_b, 'labels_b')
    if a.shape != b.shape:
        raise ValueError(f'partitions must label the same items: got {a.size} and {b.size} labels')
    n = a.size
    if n == 0:
        return 0.0
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    table = np.zeros((ai.max() + 1, bi.max() + 1), dtype=np.float64)
    np.add.at(table, (ai, bi), 1.0)
    pab = table / n
    pa, pb = pab.sum(1, keepdims=True), pab.sum(0, keepdims=True)
    nz = pab > 0
    return float((pab[nz] * np.log(pab[nz] / (pa @ pb)[nz])).sum())


def nmi(labels_a: ArrayLike, labels_b: ArrayLike) -> float:
    """Normalised mutual information, arithmetic normalisation, in ``[0, 1]`` (see module docstring)."""
    ha, hb = entropy(labels_a), entropy(labels_b)
    mi = mutual_information(labels_a, labels_b)
    if ha == 0.0 and hb == 0.0:
        return 1.0
    denom = 0.5 * (ha + hb)
    return float(min(max(mi / denom, 0.0), 1.0))


def kmeans(x: torch.Tensor, k: int, iters: int = 50, n_init: int = 3, seed: int = 0,
           tol: float = 1e-6) -> Tuple[torch.Tensor, torch.Tensor]:
    """Euclidean k-means with k-means++ seeding; the best of ``n_init`` runs (lowest inertia).

    Args:
        x: ``(N, F)`` points.
        k: clusters; clipped to the number of distinct points.

    Returns:
        ``labels (N,)`` int64 and ``centres (k', F)``.
    """
    if x.ndim != 2:
        raise ValueError(f'kmeans expects (N, F) points, got shape {tuple(x.shape)}')
    if k < 1:
        raise ValueError(f'kmeans needs k >= 1, got {k}')
    x = x.detach().double().cpu()
    n = x.shape[0]
    k = min(k, int(torch.unique(x, dim=0).shape[0]))
    gen = torch.Generator().manual_seed(seed)
    best = None
    for _ in range(max(n_init, 1)):
        # k-means++: each new centre drawn with probability proportional to squared distance.
        centres = x[torch.randint(n, (1,), generator=gen)]
        for _ in range(1, k):
            d2 = torch.cdist(x, centres).pow(2).min(1).values
            if float(d2.sum()) <= 0:
                break
            centres = torch.cat([centres, x[torch.multinomial(d2 / d2.sum(), 1, generator=gen)]])
        prev = None
        for _ in range(iters):
            dist = torch.cdist(x, centres)
            labels = dist.argmin(1)
            new = torch.zeros_like(centres).index_add_(0, labels, x)
            counts = torch.bincount(labels, minlength=centres.shape[0]).double()
            empty = counts == 0
            new = new / counts.clamp(min=1).unsqueeze(1)
            if bool(empty.any()):  # re-seed an empty cluster at the point farthest from its centre
                far = dist.gather(1, labels[:, None]).squeeze(1).argsort(descending=True)
                new[empty] = x[far[:int(empty.sum())]]
            shift = float((new - centres).pow(2).sum())
            centres = new
            if prev is not None and shift <= tol:
                break
            prev = shift
        labels = torch.cdist(x, centres).argmin(1)
        inertia = float((x - centres[labels]).pow(2).sum())
        if best is None or inertia < best[0]:
            best = (inertia, labels, centres)
    return best[1].long(), best[2].float()


def patch_centres(grid_hw: Tuple[int, int], patch_size: Union[int, Tuple[int, int]]) -> torch.Tensor:
    """Centres ``(h * w, 2)`` (x, y) in input pixels of a row-major patch grid."""
    h, w = grid_hw
    ph, pw = (patch_size, patch_size) if isinstance(patch_size, int) else patch_size
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                            indexing='ij')
    return torch.stack([(xs.flatten() + 0.5) * pw, (ys.flatten() + 0.5) * ph], dim=1)


def patch_attention(attn: torch.Tensor, num_prefix_tokens: int = 1) -> torch.Tensor:
    """Patch-to-patch attention ``(..., N, N)`` renormalised over patch keys (prefix tokens dropped)."""
    a = attn[..., num_prefix_tokens:, num_prefix_tokens:].double()
    return a / a.sum(-1, keepdim=True).clamp(min=1e-12)


def attention_distance(attn: torch.Tensor, grid_hw: Tuple[int, int],
                       patch_size: Union[int, Tuple[int, int]], num_prefix_tokens: int = 1) -> torch.Tensor:
    """Mean attention distance (pixels) of every head of every image.

    Args:
        attn: ``(B, H, T, T)`` softmax attention with ``T = num_prefix_tokens + h * w``.

    Returns:
        ``(B, H)`` float64: per image and head, ``sum_j a_ij d_ij`` averaged over the patch queries ``i``.
    """
    h, w = grid_hw
    if attn.ndim != 4 or attn.shape[-1] != attn.shape[-2] or attn.shape[-1] != num_prefix_tokens + h * w:
        raise ValueError(f'attn must be (B, heads, T, T) with T = {num_prefix_tokens} + {h}*{w}, '
                         f'got {tuple(attn.shape)}')
    c = patch_centres(grid_hw, patch_size).to(attn.device)
    dist = torch.cdist(c, c)  # (N, N)
    a = patch_attention(attn, num_prefix_tokens)
    return (a * dist).sum(-1).mean(-1)


def masks_to_patch_labels(masks: torch.Tensor, grid_hw: Tuple[int, int]) -> torch.Tensor:
    """Patch partition ``(h * w,)`` of an image from its instance masks.

    Args:
        masks: ``(M, H, W)`` bool/float instance masks on the (resized) input image; ``M`` may be 0.
        grid_hw: the patch grid.

    Returns:
        int64 labels: 0 = background, ``m + 1`` = instance ``m``; a patch takes the label covering most of it.
    """
    h, w = grid_hw
    if masks.ndim != 3:
        raise ValueError(f'masks must be (M, H, W), got shape {tuple(masks.shape)}')
    if masks.shape[0] == 0:
        return torch.zeros(h * w, dtype=torch.long)
    m = masks.float().unsqueeze(1)  # (M, 1, H, W)
    cover = F.adaptive_avg_pool2d(m, (h, w)).squeeze(1).flatten(1)  # (M, N)
    union = F.adaptive_avg_pool2d(m.amax(0, keepdim=True), (h, w)).flatten()  # (N,)
    scores = torch.cat([(1.0 - union)[None], cover], dim=0)  # (M + 1, N)
    return scores.argmax(0).long()


def cls_attention_features(attn: torch.Tensor, num_prefix_tokens: int = 1) -> torch.Tensor:
    """Per-patch features ``(N, H)`` from one image's attention ``(H, T, T)``: the [CLS] query's attention to
    each patch in every head, each head's map renormalised to sum 1 over the patches."""
    if attn.ndim != 3:
        raise ValueError(f'attn must be (heads, T, T) for one image, got {tuple(attn.shape)}')
    a = attn[:, 0, num_prefix_tokens:].double()
    a = a / a.sum(-1, keepdim=True).clamp(min=1e-12)
    return a.t().float()


def cluster_nmi(features: torch.Tensor, gt_labels: ArrayLike, k: Optional[int] = None,
                seed: int = 0) -> Tuple[float, torch.Tensor]:
    """Cluster patch features with k-means (``k`` defaults to the number of ground-truth segments) and
    return ``(NMI with gt_labels, predicted labels)``."""
    gt = _as_labels(gt_labels, 'gt_labels')
    if features.shape[0] != gt.size:
        raise ValueError(f'{features.shape[0]} patch features but {gt.size} ground-truth labels')
    k = int(k) if k else int(np.unique(gt).size)
    pred, _ = kmeans(features, k, seed=seed)
    return nmi(pred, gt), pred
