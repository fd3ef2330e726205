"""Per-row soft-target cross-entropy over the prototype logits, computed in row chunks.

``ce_r = -sum_k t_rk * log_softmax(s_r / temp_r)_k``. Written out with autograd, the (rows, prototypes) logits
(65536 prototypes: about 140 MiB for a ViT-S step) go through a division, a log-softmax, a product with the
targets and a sum forward, and as many full-size passes and temporaries backward, plus the concatenation of
the gradients of every slice that was taken of the head's output. Here one function takes the whole logits
tensor and the targets as row blocks in order, works through chunks of rows that stay in cache, keeps only the
log-probabilities for the backward, and writes the gradient
``d ce_r / d s_rk = (sum_k' t_rk' * softmax_rk - t_rk) / temp_r`` into their storage.
"""
from typing import Sequence, Union

import torch
from torch.autograd.function import once_differentiable

from projects.common.cpu_tuning import plain_reverse_mode

# Elements per chunk. CPU: 2**20 floats (16 rows, 4 MiB at 65536 prototypes), so the passes over a chunk hit the
# cache. Other devices: larger chunks, so a big batch's logits take a few kernel launches, not hundreds.
_CPU_CHUNK_ELEMENTS = 1 << 20
_DEVICE_CHUNK_ELEMENTS = 1 << 26


def _chunk_rows(like: torch.Tensor) -> int:
    elements = _CPU_CHUNK_ELEMENTS if like.device.type == 'cpu' else _DEVICE_CHUNK_ELEMENTS
    return max(1, elements // max(like.shape[1], 1))


def _chunks(targets: Sequence[torch.Tensor], size: int):
    """(first row, last row + 1, target rows) of each chunk of ``size`` rows, block by block."""
    start = 0
    for block in targets:
        for lo in range(0, block.shape[0], size):
            hi = min(lo + size, block.shape[0])
            yield start + lo, start + hi, block[lo:hi]
        start += block.shape[0]


class _SoftCrossEntropy(torch.autograd.Function):

    @staticmethod
    def forward(ctx, logits, inv_temps, *targets):
        n_rows, n_cols = logits.shape
        size = _chunk_rows(logits)
        log_p = torch.empty_like(logits)
        ce = logits.new_empty(n_rows)
        target_sums = logits.new_empty(n_rows)
        scaled = logits.new_empty(min(n_rows, size), n_cols)
        product = torch.empty_like(scaled)
        for lo, hi, t in _chunks(targets, size):
            z = scaled[:hi - lo]
            torch.mul(logits[lo:hi], inv_temps[lo:hi, None], out=z)
            torch.log_softmax(z, dim=-1, out=log_p[lo:hi])
            torch.sum(torch.mul(t, log_p[lo:hi], out=product[:hi - lo]), dim=-1, out=ce[lo:hi])
            torch.sum(t, dim=-1, out=target_sums[lo:hi])
        ctx.save_for_backward(log_p, target_sums, inv_temps, *targets)
        ctx.used = False
        return ce.neg_()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        if ctx.used:
            raise RuntimeError('soft_cross_entropy: its backward reuses the saved log-probabilities for the '
                               'gradient, so it can run only once (backward(retain_graph=True) twice is not '
                               'supported)')
        ctx.used = True
        log_p, target_sums, inv_temps, *targets = ctx.saved_tensors
        scale = grad * inv_temps  # d loss / d ce_r, over the temperature
        prob_scale = scale * target_sums
        for lo, hi, t in _chunks(targets, _chunk_rows(log_p)):
            log_p[lo:hi].exp_().mul_(prob_scale[lo:hi, None]).addcmul_(t, scale[lo:hi, None], value=-1)
        return (log_p, None) + (None,) * len(targets)


def soft_cross_entropy(logits: torch.Tensor, targets: Union[torch.Tensor, Sequence[torch.Tensor]],
                       temps: Union[float, Sequence[float]]) -> torch.Tensor:
    """``-sum_k targets_rk * log_softmax(logits_r / temp, -1)_k`` for every row r: ``(R,)``.

    Args:
        logits: ``(R, K)`` student logits (the student's temperature is applied here).
        targets: ``(R, K)`` target probabilities, or row blocks in order whose rows add up to R (e.g. the [CLS]
            targets and the patch targets, so the head's output needs no concatenation or slicing).
        temps: the student temperature, or one per block.

    Computed in float32 at least (lower precisions are cast up; fp16 logits / 0.1 would overflow softmax). The
    targets are constants (teacher outputs): targets that require grad, forward-mode AD, ``torch.func`` and
    ``torch.compile`` take the same formula through autograd. The chunked function supports one first-order
    backward.
    Rows need not sum to 1 (a sum of several teachers' targets gives the sum of their cross-entropies).
    """
    blocks = [targets] if isinstance(targets, torch.Tensor) else list(targets)
    temp_list = [float(temps)] * len(blocks) if isinstance(temps, (int, float)) else [float(t) for t in temps]
    if logits.dim() != 2:
        raise ValueError(f'soft_cross_entropy: logits must be (rows, classes), got shape {tuple(logits.shape)}')
    if len(temp_list) != len(blocks):
        raise ValueError(f'soft_cross_entropy: {len(temp_list)} temperatures for {len(blocks)} target blocks')
    if any(b.dim() != 2 or b.shape[1] != logits.shape[1] for b in blocks) or \
            sum(b.shape[0] for b in blocks) != logits.shape[0]:
        raise ValueError(f'soft_cross_entropy: target blocks {[tuple(b.shape) for b in blocks]} must be '
                         f'(rows, {logits.shape[1]}) with {logits.shape[0]} rows in all, as the logits')
    if not all(t > 0 for t in temp_list):  # also NaN
        raise ValueError(f'soft_cross_entropy: temperatures must be > 0, got {temp_list}')
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    blocks = [b.to(logits.dtype) for b in blocks]
    inv_temps = torch.cat([logits.new_full((b.shape[0],), 1.0 / t) for b, t in zip(blocks, temp_list)]
                          + [logits.new_zeros(0)])
    if plain_reverse_mode() and not any(b.requires_grad for b in blocks):
        return _SoftCrossEntropy.apply(logits, inv_temps, *(b.contiguous() for b in blocks))
    log_p = torch.log_softmax(logits * inv_temps[:, None], dim=-1)
    return -(torch.cat(blocks) * log_p).sum(-1)
