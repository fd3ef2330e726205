"""Faster execution of mmpretrain's ``TransformerEncoderLayer`` for pre-training, with the same parameters.

The layer objects (and so every parameter name, ``layers.N.*``) stay mmpretrain's; only how a layer is *run*
changes:

* **Stochastic depth on the kept samples only.** mmcv's ``DropPath`` computes a residual branch for the whole
  batch and then multiplies the dropped samples by zero. DINOv2 (``drop_add_residual_stochastic_depth`` in
  ``dinov2/layers/block.py``) runs the branch on the kept subset and adds it back with ``index_add``, so a
  drop-path rate p saves about a fraction p of the branch's compute. Two ways to choose the subset:

  - ``'bernoulli'`` (default): every sample is kept with probability 1 - p and the residual is scaled by
    1 / (1 - p), drawn exactly as mmcv's ``drop_path`` draws it (one ``torch.rand((B, 1, 1))`` per branch).
    The result is the same function as ``x + DropPath(branch(x))`` for the same random numbers, so a seeded
    step gives the same losses as the plain layer.
  - ``'dinov2'``: DINOv2's rule: exactly ``max(int(B * (1 - p)), 1)`` samples kept (a random permutation),
    residual scaled by B / kept. Same expectation, a fixed compute saving, different random draws.

* **Attention** through the layer's own ``scaled_dot_product_attention``, which mmpretrain binds to
  ``torch.nn.functional.scaled_dot_product_attention`` (flash / memory-efficient kernels on CUDA, a fused
  kernel on CPU) whenever ``qk_scale`` is not set; for short sequences on the CPU (the local views) the same
  product written out as two matmuls and a softmax (:func:`attend`), which was faster there.
* **View groups in one pass** (:func:`run_layer_groups`, DINOv2's ``forward_features_list``): the tokens of
  several view groups (the global views, each size of local views) are one ``(rows, D)`` stream; the layer
  norms, linear products, GELU and residual adds run once over every group's rows, the attention per group.
  One larger product ran faster than one per group (docs/benchmarks.md).
* **The last layer on the rows a loss reads** (:func:`run_layer_rows`): keys and values from every token; the
  queries, the attention, the output projection and the FFN only for the requested rows ([CLS] and masked
  patches in pre-training; :func:`attention_rows`).
* **Optional ``torch.compile``** of the two residual branches (``dynamic=True``: the batch changes with the
  kept subset and the token count with the view size).

Activation checkpointing is applied by the caller around :func:`run_layer`; checkpoint's RNG-state
preservation makes the recomputed branch see the same kept subset.

* **LayerScale folded into the preceding linear layer** (:func:`scaled_linear`): one matmul, no per-token
  product forward or backward.
* **Linear products by oneDNN** on float32 CPU tensors (:func:`projects.common.fast_linear.linear`): faster than
  MKL's ``sgemm``, which ``F.linear`` uses there, for the forward product and the input gradient.

Where a forward hook watches a layer's modules (e.g. attention recording for the analysis tools), nothing is
dropped (eval mode, rate 0) and nothing is compiled, the layer's own ``forward`` runs, so the hooks fire.
"""
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from projects.common.fast_linear import linear, linear_module, plain_reverse_mode, watched

DROP_PATH_MODES = ('bernoulli', 'dinov2')


def layer_drop_prob(layer: nn.Module) -> float:
    """The stochastic-depth rate mmpretrain gave this layer (its attention's ``out_drop``, a ``DropPath``)."""
    return float(getattr(layer.attn.out_drop, 'drop_prob', 0.0))


def set_drop_path(layers, rate: float) -> None:
    """Give every layer the stochastic-depth rate ``rate`` (both of its ``DropPath`` modules)."""
    for layer in layers:
        for drop in (layer.attn.out_drop, layer.ffn.dropout_layer):
            if not hasattr(drop, 'drop_prob'):
                raise TypeError(f'expected a DropPath, got {type(drop).__name__}')
            drop.drop_prob = float(rate)


# Up to this many keys, float32 attention on the CPU runs as two matmuls and a softmax: for the 37-token local
# views that was faster forward + backward than SDPA's fused CPU kernel; at 197 tokens the kernel was as fast.
# Lower precisions keep SDPA, whose softmax accumulates in float32.
SHORT_ATTENTION_TOKENS = 64


def attend(attn: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The layer's ``scaled_dot_product_attention`` of ``(B, H, Tq, d)`` queries and ``(B, H, Tk, d)`` keys and
    values, with its attention dropout while training; the same product written out for short CPU sequences."""
    dropout = attn.attn_drop if attn.training else 0.
    if (dropout == 0. and k.shape[-2] <= SHORT_ATTENTION_TOKENS and q.device.type == 'cpu'
            and q.dtype == torch.float32 and attn.scaled_dot_product_attention is F.scaled_dot_product_attention
            and not torch.compiler.is_compiling()):
        scores = torch.matmul(q, k.transpose(-2, -1)).mul_(q.shape[-1] ** -0.5)
        return torch.matmul(scores.softmax(-1), v)
    return attn.scaled_dot_product_attention(q, k, v, dropout_p=dropout)


def _group_head_views(packed: torch.Tensor, groups, parts: int, heads: int) -> list:
    views, start, head_dims = [], 0, packed.shape[-1] // parts // heads
    for batch, tokens in groups:
        block = packed[start:start + batch * tokens].view(batch, tokens, parts, heads, head_dims)
        views.extend(block.permute(2, 0, 3, 1, 4).unbind(0))
        start += batch * tokens
    return views


class _SplitHeads(torch.autograd.Function):
    """``(rows, n * H * d)``, the rows of view groups ``(B_i, T_i)`` one after another -> per group n views
    ``(B_i, H, T_i, d)``; the backward copies every gradient straight into one ``(rows, n * H * d)`` tensor, where
    autograd's ``unbind``, ``permute`` and slicing backward first stack them, then copy the stack into that layout
    and concatenate the groups (several passes over the gradient)."""

    @staticmethod
    def forward(ctx, packed: torch.Tensor, groups, parts: int, heads: int):
        ctx.shape, ctx.groups, ctx.parts, ctx.heads = packed.shape, groups, parts, heads
        ctx.set_materialize_grads(False)  # an unused part gets a zero block here, not a zero tensor from autograd
        return tuple(_group_head_views(packed, groups, parts, heads))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads):
        like = next((g for g in grads if g is not None), None)
        if like is None:
            return None, None, None, None
        out = like.new_empty(ctx.shape)
        for view, grad in zip(_group_head_views(out, ctx.groups, ctx.parts, ctx.heads), grads):
            if grad is None:
                view.zero_()
            else:
                view.copy_(grad)
        return out, None, None, None


def split_group_heads(packed: torch.Tensor, groups, parts: int, heads: int) -> list:
    """The ``parts`` tensors (q, k, v or k, v) packed along the channels of ``(rows, parts * H * d)``, whose rows
    are the tokens of view groups ``groups`` = ``[(B_i, T_i), ...]`` one group after another: per group, the
    ``parts`` tensors as ``(B_i, H, T_i, d)`` views, in one flat list."""
    groups = tuple((int(b), int(t)) for b, t in groups)
    if torch.is_grad_enabled() and packed.requires_grad and plain_reverse_mode():
        return list(_SplitHeads.apply(packed, groups, parts, heads))
    return _group_head_views(packed, groups, parts, heads)


def split_heads(packed: torch.Tensor, parts: int, heads: int):
    """The ``parts`` tensors (q, k, v or k, v) packed along the channels of ``(B, T, parts * H * d)``, each as
    ``(B, H, T, d)`` views."""
    batch, tokens, channels = packed.shape
    return tuple(split_group_heads(packed.reshape(batch * tokens, channels), [(batch, tokens)], parts, heads))


def _check_attention(attn: nn.Module) -> None:
    if attn.v_shortcut:
        raise ValueError('fast layers do not support MultiheadAttention(v_shortcut=True)')


def attention_mix(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``attention(ln1(x))`` before the output projection, ``(B, T, D)``."""
    attn = layer.attn
    _check_attention(attn)
    batch, tokens, _ = x.shape
    q, k, v = split_heads(linear_module(attn.qkv, layer.ln1(x)), 3, attn.num_heads)
    return attend(attn, q, k, v).transpose(1, 2).reshape(batch, tokens, attn.embed_dims)


def attention_rows(layer: nn.Module, x: torch.Tensor, samples: torch.Tensor, tokens: torch.Tensor,
                   max_rows: Optional[int] = None) -> torch.Tensor:
    """``attention_mix(layer, x)[samples, tokens]``, ``(R, D)``, with queries for those R rows only.

    Keys and values come from every token; the query projection and the attention run for the requested rows,
    padded per sample to the largest count (rows may come in any order). ``max_rows``: an upper bound of the rows
    of one sample, known to the caller (then nothing is read back from the device); by default the count.
    """
    attn = layer.attn
    _check_attention(attn)
    batch, n_tokens, dims = x.shape
    heads, head_dims = attn.num_heads, attn.head_dims
    normed = layer.ln1(x)
    w_q, w_kv = attn.qkv.weight.split([dims, 2 * dims])
    b_q, b_kv = (None, None) if attn.qkv.bias is None else attn.qkv.bias.split([dims, 2 * dims])
    k, v = split_heads(linear(normed, w_kv, b_kv), 2, heads)
    q_rows = linear(normed[samples, tokens], w_q, b_q)  # (R, D)
    # counts by index_add, not bincount: bincount reads its input's maximum back to the host on CUDA
    counts = torch.zeros(batch, dtype=torch.long, device=x.device).index_add_(0, samples, torch.ones_like(samples))
    order = torch.argsort(samples, stable=True)
    ranks = torch.arange(samples.numel(), device=x.device) - (counts.cumsum(0) - counts)[samples[order]]
    slot = torch.empty_like(ranks).index_put_((order,), ranks)  # each row's rank among its sample's rows
    if max_rows is None:
        max_rows = int(counts.max()) if samples.numel() else 0
    q = q_rows.new_zeros(batch, max_rows, dims)
    q = q.index_put((samples, slot), q_rows)
    q = q.view(batch, -1, heads, head_dims).transpose(1, 2)
    out = attend(attn, q, k, v).transpose(1, 2).reshape(batch, -1, dims)
    return out[samples, slot]


def scaled_linear(fc: nn.Module, scale: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``scale(fc(x))``, with a LayerScale (a per-channel ``weight``) folded into the linear layer ``fc``.

    ``x @ (W * g).T + b * g`` is one matmul and no ``(tokens, D)`` product forward or backward; the gradients of
    ``W``, ``b`` and ``g`` come from the ``(D, D_in)`` folded weight. Equal up to float rounding. Anything but a
    channels-last LayerScale (e.g. ``nn.Identity`` when layer scale is off) is applied as is.
    """
    gamma = getattr(scale, 'weight', None)
    if not isinstance(fc, nn.Linear) or gamma is None or getattr(scale, 'data_format',
                                                                 'channels_last') != 'channels_last':
        return scale(linear_module(fc, x))
    bias = None if fc.bias is None else fc.bias * gamma
    return linear(x, fc.weight * gamma[:, None], bias)


def attn_output(layer: nn.Module, mixed: torch.Tensor) -> torch.Tensor:
    """``gamma1(proj(mixed))``: the attention branch after :func:`attention_mix` (any leading shape).

    ``proj_drop`` (a dropout) commutes with the per-channel scale, so the scale is folded into ``proj``.
    """
    attn = layer.attn
    return attn.proj_drop(scaled_linear(attn.proj, attn.gamma1, mixed))


def attn_branch(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``gamma1(proj(attention(ln1(x))))``: mmpretrain's ``MultiheadAttention.forward`` without its DropPath."""
    return attn_output(layer, attention_mix(layer, x))


def ffn_branch(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``gamma2(mlp(ln2(x)))``: mmcv's ``FFN.forward`` without its identity and DropPath."""
    ffn = layer.ffn
    if not getattr(ffn, 'add_identity', True):
        raise ValueError('fast layers need an FFN with add_identity=True (a residual branch)')
    *hidden, last_fc, last_drop = ffn.layers  # mmcv's FFN: [Sequential(fc, act, drop)] * n, fc, drop
    h = layer.ln2(x)
    for block in hidden:  # Sequential(fc, act, drop)
        h = linear_module(block, h)
    return last_drop(scaled_linear(last_fc, ffn.gamma2, h))


def kept_samples(batch: int, drop_prob: float, mode: str, like: torch.Tensor):
    """(indices of the samples whose branch is computed, residual scale)."""
    if mode == 'bernoulli':
        # mmcv's drop_path: keep iff floor(keep_prob + U[0, 1)) == 1; the same draw, so the same samples.
        keep_prob = 1.0 - drop_prob
        draw = keep_prob + torch.rand((batch, 1, 1), dtype=like.dtype, device=like.device)
        return draw.floor().flatten().nonzero().flatten(), 1.0 / keep_prob
    if mode == 'dinov2':
        kept = max(int(batch * (1.0 - drop_prob)), 1)
        return torch.randperm(batch, device=like.device)[:kept], batch / kept
    raise ValueError(f'drop_path_mode must be one of {DROP_PATH_MODES}, got {mode!r}')


def add_residual(x: torch.Tensor, branch: Callable[[torch.Tensor], torch.Tensor], drop_prob: float,
                 mode: str = 'bernoulli') -> torch.Tensor:
    """``x + stochastic_depth(branch(x))`` with ``branch`` run on the kept samples only."""
    if drop_prob <= 0.0:
        return x + branch(x)
    index, scale = kept_samples(x.shape[0], drop_prob, mode, x)
    if index.numel() == x.shape[0]:  # nothing dropped: no gather / scatter
        return x + branch(x) * scale
    # index_select, not x[index]: its backward is an index_add, where advanced indexing's is a serial
    # accumulating index_put on CPU
    residual = branch(x.index_select(0, index))
    return torch.index_add(x, 0, index, residual.to(x.dtype), alpha=scale)


def observed(layer: nn.Module) -> bool:
    """Whether a hook watches the layer or any of its modules (then the layer's own forward must run)."""
    return any(watched(m) for m in layer.modules())


def run_layer(layer: nn.Module, x: torch.Tensor, drop_path_mode: str = 'bernoulli',
              branches: Optional[tuple] = None) -> torch.Tensor:
    """One ``TransformerEncoderLayer`` forward; in eval mode or with drop-path 0 equal to ``layer(x)`` up to float
    rounding.

    ``branches``: ``(attn_fn, ffn_fn)`` taking ``(layer, x)``, e.g. compiled versions of :func:`attn_branch` and
    :func:`ffn_branch` (default: those two).
    """
    drop_prob = layer_drop_prob(layer) if layer.training else 0.0
    if drop_prob <= 0.0 and branches is None and observed(layer):
        return layer(x)  # mmpretrain's own forward, so its modules' hooks fire (e.g. attention recording)
    attn_fn, ffn_fn = branches or (attn_branch, ffn_branch)
    x = add_residual(x, lambda t: attn_fn(layer, t), drop_prob, drop_path_mode)
    return add_residual(x, lambda t: ffn_fn(layer, t), drop_prob, drop_path_mode)


class _AddScaledRows(torch.autograd.Function):
    """``x.index_add(0, index, src)`` with each row block ``[lo, hi)`` of ``src`` (and ``index``) scaled by its own
    factor: one residual add for view groups with different stochastic-depth scales, without a scaled copy of
    ``src`` forward or backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, index: torch.Tensor, src: torch.Tensor, blocks):
        ctx.save_for_backward(index)
        ctx.blocks = blocks
        out = x.clone()
        for lo, hi, scale in blocks:
            out.index_add_(0, index[lo:hi], src[lo:hi], alpha=scale)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        index, = ctx.saved_tensors
        grad_src = None
        if ctx.needs_input_grad[2]:
            grad_src = grad.index_select(0, index)
            for lo, hi, scale in ctx.blocks:
                if scale != 1.0:
                    grad_src[lo:hi].mul_(scale)
        return grad, None, grad_src, None


def add_scaled_rows(x: torch.Tensor, index: torch.Tensor, src: torch.Tensor, blocks) -> torch.Tensor:
    """``x`` with ``src``'s rows added at rows ``index``, the rows ``[lo, hi)`` of each block ``(lo, hi, scale)``
    scaled by ``scale``."""
    src = src.to(x.dtype)
    if torch.is_grad_enabled() and plain_reverse_mode():
        return _AddScaledRows.apply(x, index, src, tuple(blocks))
    scales = torch.cat([src.new_full((hi - lo,), scale) for lo, hi, scale in blocks])
    return x.index_add(0, index, src * scales[:, None])


def merge_heads(outs) -> torch.Tensor:
    """Per-group attention outputs ``(B_i, H, T_i, d)`` -> their rows ``(sum B_i * T_i, H * d)``, group after
    group (a view for one group whose kernel wrote ``(B, T, H, d)``, as SDPA's fused CPU kernel does)."""
    rows = [o.transpose(1, 2).reshape(-1, o.shape[1] * o.shape[3]) for o in outs]
    return rows[0] if len(rows) == 1 else torch.cat(rows)


def _group_branch(x: torch.Tensor, groups, kept, branch: Callable[[torch.Tensor, list], torch.Tensor]):
    """``x + stochastic_depth(branch(rows, kept groups))`` over the rows of view groups ``groups`` with per-group
    kept samples ``kept`` (``(indices or None, scale)``; None: every sample, scale 1)."""
    if all(index is None for index, _ in kept):
        return x + branch(x, list(groups))
    index, blocks, kept_groups, start, lo = [], [], [], 0, 0
    for (batch, tokens), (samples, scale) in zip(groups, kept):
        if samples is None:
            samples = torch.arange(batch, device=x.device)
        if samples.numel():
            rows = (samples[:, None] * tokens + torch.arange(tokens, device=x.device)).flatten() + start
            index.append(rows)
            blocks.append((lo, lo + rows.numel(), float(scale)))
            kept_groups.append((samples.numel(), tokens))
            lo += rows.numel()
        start += batch * tokens
    if not index:  # every sample of every group dropped: the branch on no rows (zero, not missing, gradients)
        index, blocks, kept_groups = [x.new_empty(0, dtype=torch.long)], [(0, 0, 1.0)], [(0, groups[0][1])]
    index = torch.cat(index)
    return add_scaled_rows(x, index, branch(x.index_select(0, index), kept_groups), blocks)


def _group_attention(layer: nn.Module, rows: torch.Tensor, groups) -> torch.Tensor:
    """``gamma1(proj(attention(ln1(x))))`` for the rows of view groups: the linear products over all rows at
    once, the attention per group."""
    attn = layer.attn
    _check_attention(attn)
    parts = split_group_heads(linear_module(attn.qkv, layer.ln1(rows)), groups, 3, attn.num_heads)
    mixed = merge_heads([attend(attn, *parts[3 * i:3 * i + 3]) for i in range(len(groups))])
    return attn_output(layer, mixed)


def run_layer_groups(layer: nn.Module, x: torch.Tensor, groups, drop_path_mode: str = 'bernoulli',
                     branches: Optional[tuple] = None) -> torch.Tensor:
    """One ``TransformerEncoderLayer`` over several view groups at once (DINOv2's ``forward_features_list``).

    ``x``: ``(rows, D)``, the tokens of the groups ``groups`` = ``[(B_i, T_i), ...]`` (e.g. the global and the
    local views) one group after another. The layer norms, linear products and GELU run once over the rows of
    every group (one larger product is faster than one per view size), the attention per group. Stochastic
    depth draws per group in the order of ``[run_layer(layer, x_i) for x_i in groups]`` (attention, then FFN,
    group after group), so a seeded step keeps the same samples as that loop and gives its result up to float
    rounding. With ``branches`` (compiled branches) or hooks watching the layer, it is that loop.
    """
    groups = [(int(b), int(t)) for b, t in groups]
    if branches is not None or observed(layer):
        views = x.split([b * t for b, t in groups])
        return torch.cat([run_layer(layer, v.view(b, t, -1), drop_path_mode, branches).flatten(0, 1)
                          for v, (b, t) in zip(views, groups)])
    drop_prob = layer_drop_prob(layer) if layer.training else 0.0
    draws = []  # per group: (attention's kept samples, scale), (FFN's kept samples, scale)
    for batch, _ in groups:
        for _ in range(2):
            if drop_prob <= 0.0:
                draws.append((None, 1.0))
                continue
            index, scale = kept_samples(batch, drop_prob, drop_path_mode, x)
            draws.append((None if index.numel() == batch and scale == 1.0 else index, scale))
    x = _group_branch(x, groups, draws[0::2], lambda rows, kept: _group_attention(layer, rows, kept))
    return _group_branch(x, groups, draws[1::2], lambda rows, kept: ffn_branch(layer, rows))


def sample_factors(batch: int, drop_prob: float, mode: str, like: torch.Tensor) -> torch.Tensor:
    """Per-sample residual factors ``(batch,)`` (float32 at least): the scale of :func:`kept_samples` where a sample keeps the
    branch, 0 where it drops it; the same random draws as :func:`kept_samples`, without reading the kept count
    back."""
    dtype = torch.promote_types(like.dtype, torch.float32)
    if mode == 'bernoulli':
        keep_prob = 1.0 - drop_prob
        draw = keep_prob + torch.rand((batch, 1, 1), dtype=like.dtype, device=like.device)
        return draw.floor().flatten().to(dtype) * (1.0 / keep_prob)
    if mode == 'dinov2':
        kept = max(int(batch * (1.0 - drop_prob)), 1)
        index = torch.randperm(batch, device=like.device)[:kept]
        return torch.zeros(batch, dtype=dtype, device=like.device).index_fill_(0, index, batch / kept)
    raise ValueError(f'drop_path_mode must be one of {DROP_PATH_MODES}, got {mode!r}')


def run_layer_rows(layer: nn.Module, x: torch.Tensor, samples: torch.Tensor, tokens: torch.Tensor,
                   drop_path_mode: str = 'bernoulli', max_rows: Optional[int] = None) -> torch.Tensor:
    """``run_layer(layer, x)[samples, tokens]``, ``(R, D)``, computing only those R output rows.

    Keys and values still come from every token of ``x``; the queries, the attention, the output projection and
    the FFN run for the R rows only (:func:`attention_rows`; ``max_rows`` as there). For the last layer of a
    pre-training pass, whose loss reads the [CLS] tokens and the masked patch tokens alone, this is the same result
    for those rows with less work. Stochastic depth draws exactly as :func:`run_layer` does (one draw per branch
    over the whole batch), so a seeded step keeps the samples it would have kept; the branches run on every
    requested row and a dropped sample's rows get a zero factor (which rows are dropped is not read back to the
    host; these few rows are a small share of the step).
    """
    drop_prob = layer_drop_prob(layer) if layer.training else 0.0
    rows = x[samples, tokens]
    if drop_prob <= 0.0:
        rows = rows + attn_output(layer, attention_rows(layer, x, samples, tokens, max_rows))
        return rows + ffn_branch(layer, rows)

    def add_scaled(base: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        # the factor (a float scale) applied in float32 at least, as index_add's alpha would be
        factor = sample_factors(x.shape[0], drop_prob, drop_path_mode, x)[samples, None]
        dtype = torch.promote_types(base.dtype, torch.float32)
        return torch.addcmul(base.to(dtype), branch.to(dtype), factor.to(dtype)).to(base.dtype)

    rows = add_scaled(rows, attn_output(layer, attention_rows(layer, x, samples, tokens, max_rows)))
    return add_scaled(rows, ffn_branch(layer, rows))


def compiled_branches(**compile_kwargs) -> tuple:
    """``torch.compile``d :func:`attn_branch` and :func:`ffn_branch` (dynamic shapes by default)."""
    compile_kwargs.setdefault('dynamic', True)
    return torch.compile(attn_branch, **compile_kwargs), torch.compile(ffn_branch, **compile_kwargs)
