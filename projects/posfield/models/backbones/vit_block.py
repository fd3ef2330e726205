"""The ViT block of the pre-training backbone and of the detector: :class:`ViTBlock`.

It is mmpretrain's ``TransformerEncoderLayer`` (the same modules, so every parameter name, ``ln1``, ``attn.qkv``,
``attn.proj``, ``attn.gamma1``, ``ln2``, ``ffn.layers``, ``ffn.gamma2``, stays mmpretrain's and checkpoints,
the detector and the converters load it unchanged) with three forwards:

* :meth:`ViTBlock.forward`: the plain forward of one ``(B, N, D)`` tensor, mmpretrain's semantics and code (the
  reference the other two are tested against; modules' hooks fire).
* :meth:`ViTBlock.forward_groups`: several view groups in one pass (DINOv2's ``forward_features_list``): the
  tokens of the groups (the global views, each size of local views) are one ``(rows, D)`` stream; the layer
  norms, linear products, GELU and residual adds run once over every group's rows, the attention per group.
  One larger product ran faster than one per group (docs/benchmarks.md).
* :meth:`ViTBlock.forward_rows`: only some output rows (the last layer of a pre-training pass, whose loss reads
  the [CLS] tokens and the masked patches alone): keys and values from every token, the queries, the attention,
  the output projection and the FFN for the requested rows only.

**Stochastic depth** (``drop_path_mode``). The same random numbers choose the same samples in all three
forwards. Two rules:

- ``'bernoulli'`` (default): every sample is kept with probability 1 - p and its residual scaled by 1 / (1 - p),
  drawn exactly as mmcv's ``DropPath`` draws it (one ``torch.rand((B, 1, 1))`` per branch), so the plain forward
  is mmpretrain's own. Every forward computes every sample's branch and multiplies the dropped ones by zero, as
  mmcv does: the kept count is random, and running the kept samples only would read it back to the host.
- ``'dinov2'``: DINOv2's rule: exactly ``max(int(B * (1 - p)), 1)`` samples kept (a random permutation),
  residual scaled by B / kept. Same expectation, other random draws, and a fixed shape: the fused forwards run
  each residual branch on the kept samples only and add it back with ``index_add`` (DINOv2's
  ``drop_add_residual_stochastic_depth``), so a rate p saves about a fraction p of the branch's compute without a
  host synchronisation; the plain forward multiplies the dropped samples' branches by zero.

The fused forwards also fold LayerScale into the preceding linear layer (:func:`scaled_linear`), split the
packed q/k/v with one gradient copy (:func:`split_group_heads`), and take their linear products through
:mod:`projects.common.cpu_tuning`, which is plain ``F.linear`` unless that module's ``apply`` turned the CPU
tuning on. Where a hook watches a module of the block (the analysis tools' attention
recording), the fused forwards run the plain one, so the hooks fire.
"""
from typing import Callable, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmcv.cnn.bricks.transformer import FFN
from mmpretrain.models.backbones.vision_transformer import TransformerEncoderLayer
from mmpretrain.registry import MODELS

from projects.common.cpu_tuning import linear, linear_module, plain_reverse_mode, watched

DROP_PATH_MODES = ('bernoulli', 'dinov2')


def _draw_kept(batch: int, drop_prob: float, mode: str, like: torch.Tensor):
    """The random draw of one branch of one block, ``(kept, residual scale)``: ``'bernoulli'``: ``kept`` is a
    ``(batch,)`` 0/1 mask of ``like``'s dtype; ``'dinov2'``: the kept samples' indices."""
    if mode == 'bernoulli':
        # mmcv's drop_path: keep iff floor(keep_prob + U[0, 1)) == 1; the same draw, so the same samples.
        keep_prob = 1.0 - drop_prob
        draw = keep_prob + torch.rand((batch, 1, 1), dtype=like.dtype, device=like.device)
        return draw.floor().flatten(), 1.0 / keep_prob
    if mode == 'dinov2':
        kept = max(int(batch * (1.0 - drop_prob)), 1)
        return torch.randperm(batch, device=like.device)[:kept], batch / kept
    raise ValueError(f'drop_path_mode must be one of {DROP_PATH_MODES}, got {mode!r}')


def kept_samples(batch: int, drop_prob: float, mode: str, like: torch.Tensor):
    """(indices of the samples whose branch is computed, residual scale) for one branch of one block
    (``'dinov2'``; ``'bernoulli'``'s kept count is random, so its indices would be read back to the host)."""
    if mode == 'bernoulli':
        raise ValueError("kept_samples: 'bernoulli' computes every sample's branch (add_residual)")
    return _draw_kept(batch, drop_prob, mode, like)


def sample_factors(batch: int, drop_prob: float, mode: str, like: torch.Tensor) -> torch.Tensor:
    """Per-sample residual factors ``(batch,)`` (float32 at least): the rule's scale where a sample keeps the
    branch, 0 where it drops it; the same random draws as the other forwards, without reading anything back."""
    dtype = torch.promote_types(like.dtype, torch.float32)
    kept, scale = _draw_kept(batch, drop_prob, mode, like)
    if mode == 'bernoulli':
        return kept.to(dtype) * scale
    return torch.zeros(batch, dtype=dtype, device=like.device).index_fill_(0, kept, scale)


def mmcv_drop_path(branch: torch.Tensor, mask: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """mmcv's ``drop_path`` of a branch computed for every row, given the 0/1 keep ``mask`` of its rows
    (``(rows,)``): ``branch / keep_prob * mask``, the same operations as mmcv, so the same values."""
    return branch.div(1.0 - drop_prob) * mask.view(-1, *(1, ) * (branch.dim() - 1))


def add_residual(x: torch.Tensor, branch: Callable[[torch.Tensor], torch.Tensor], drop_prob: float,
                 mode: str = 'bernoulli') -> torch.Tensor:
    """``x + stochastic_depth(branch(x))``; for ``'dinov2'`` with ``branch`` run on the kept samples only."""
    if drop_prob <= 0.0:
        return x + branch(x)
    if mode == 'bernoulli':
        return x + mmcv_drop_path(branch(x), _draw_kept(x.shape[0], drop_prob, mode, x)[0], drop_prob)
    index, scale = kept_samples(x.shape[0], drop_prob, mode, x)
    if index.numel() == x.shape[0]:  # nothing dropped: no gather / scatter
        return x + branch(x) * scale
    # index_select, not x[index]: its backward is an index_add, where advanced indexing's is a serial
    # accumulating index_put on CPU
    residual = branch(x.index_select(0, index))
    return torch.index_add(x, 0, index, residual.to(x.dtype), alpha=scale)


def attend(attn: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The attention module's ``scaled_dot_product_attention`` of ``(B, H, Tq, d)`` queries and ``(B, H, Tk, d)``
    keys and values, with its attention dropout while training."""
    dropout = attn.attn_drop if attn.training else 0.
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


def merge_heads(outs) -> torch.Tensor:
    """Per-group attention outputs ``(B_i, H, T_i, d)`` -> their rows ``(sum B_i * T_i, H * d)``, group after
    group (a view for one group whose kernel wrote ``(B, T, H, d)``, as SDPA's fused CPU kernel does)."""
    rows = [o.transpose(1, 2).reshape(-1, o.shape[1] * o.shape[3]) for o in outs]
    return rows[0] if len(rows) == 1 else torch.cat(rows)


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


@MODELS.register_module()
class ViTBlock(TransformerEncoderLayer):
    """mmpretrain's ``TransformerEncoderLayer`` (same arguments, modules and parameter names) with a plain, a
    grouped and a rows-only forward (see the module's docstring).

    Args:
        drop_path_mode: ``'bernoulli'`` (mmcv's ``DropPath`` draw) or ``'dinov2'`` (DINOv2's fixed kept count).
        Other args: mmpretrain's ``TransformerEncoderLayer`` (``ffn_type='origin'`` only: the residual branches
        read mmcv's ``FFN``).
    """

    def __init__(self, *args, drop_path_mode: str = 'bernoulli', **kwargs):
        if drop_path_mode not in DROP_PATH_MODES:
            raise ValueError(f'drop_path_mode must be one of {DROP_PATH_MODES}, got {drop_path_mode!r}')
        super().__init__(*args, **kwargs)
        if not isinstance(self.ffn, FFN) or not self.ffn.add_identity:
            raise ValueError("ViTBlock needs ffn_type='origin' (mmcv's FFN with its identity, a residual branch)")
        self.drop_path_mode = drop_path_mode

    # stochastic depth -------------------------------------------------------------------------------------------

    @property
    def drop_prob(self) -> float:
        """The stochastic-depth rate of both residual branches (their ``DropPath`` modules)."""
        return float(getattr(self.attn.out_drop, 'drop_prob', 0.0))

    def set_drop_path(self, rate: float) -> None:
        """Give both residual branches (their ``DropPath`` modules) the stochastic-depth rate ``rate``."""
        for drop in (self.attn.out_drop, self.ffn.dropout_layer):
            if not hasattr(drop, 'drop_prob'):
                raise TypeError(f'expected a DropPath, got {type(drop).__name__}')
            drop.drop_prob = float(rate)

    def _active_drop_prob(self) -> float:
        return self.drop_prob if self.training else 0.0

    def _drop_path(self, branch: torch.Tensor, drop_path: nn.Module) -> torch.Tensor:
        """The plain stochastic depth of a branch computed for every sample: its ``DropPath`` module for
        ``'bernoulli'``; for ``'dinov2'`` the kept subset's scale, zero for the dropped samples."""
        rate = self._active_drop_prob()
        if self.drop_path_mode == 'bernoulli' or rate <= 0.0:
            return drop_path(branch)
        index, scale = kept_samples(branch.shape[0], rate, self.drop_path_mode, branch)
        factor = branch.new_zeros(branch.shape[0]).index_fill_(0, index, scale)
        return branch * factor.view(-1, *(1, ) * (branch.dim() - 1))

    def observed(self) -> bool:
        """Whether a hook watches the block or any of its modules (then the plain forward runs)."""
        return any(watched(m) for m in self.modules())

    # the plain forward ------------------------------------------------------------------------------------------

    def attention_bias(self, q: torch.Tensor, hw: Optional[Tuple[int, int]]) -> Optional[torch.Tensor]:
        """An additive attention mask for queries ``q`` ``(B, H, T, d)`` on an ``hw`` grid; None here (the
        detector's block adds its relative position bias)."""
        return None

    def attention(self, y: torch.Tensor, hw: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """mmpretrain's ``MultiheadAttention.forward`` on normed ``(B, T, D)`` tokens, without its ``DropPath``,
        with :meth:`attention_bias` added to the logits."""
        attn = self.attn
        b, n, _ = y.shape
        q, k, v = attn.qkv(y).reshape(b, n, 3, attn.num_heads, attn.head_dims).permute(2, 0, 3, 1, 4).unbind(0)
        bias = self.attention_bias(q, hw)
        out = attn.scaled_dot_product_attention(q, k, v, attn_mask=bias,
                                                dropout_p=attn.attn_drop if attn.training else 0.)
        out = attn.proj(out.transpose(1, 2).reshape(b, n, attn.embed_dims))
        return attn.gamma1(attn.proj_drop(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The plain forward of ``(B, N, D)`` tokens: mmpretrain's ``TransformerEncoderLayer.forward`` (for
        ``'dinov2'`` stochastic depth while training, the same branches with that rule's per-sample scale)."""
        if self.drop_path_mode == 'bernoulli' or self._active_drop_prob() <= 0.0:
            return super().forward(x)
        x = x + self._drop_path(self.attention(self.ln1(x)), self.attn.out_drop)
        return x + self._drop_path(self.ffn.gamma2(self.ffn.layers(self.ln2(x))), self.ffn.dropout_layer)

    # the fused branches -----------------------------------------------------------------------------------------

    def attention_mix(self, x: torch.Tensor) -> torch.Tensor:
        """``attention(ln1(x))`` before the output projection, ``(B, T, D)``."""
        attn = self.attn
        batch, tokens, _ = x.shape
        q, k, v = split_heads(linear_module(attn.qkv, self.ln1(x)), 3, attn.num_heads)
        return attend(attn, q, k, v).transpose(1, 2).reshape(batch, tokens, attn.embed_dims)

    def attention_rows(self, x: torch.Tensor, samples: torch.Tensor, tokens: torch.Tensor,
                       max_rows: Optional[int] = None) -> torch.Tensor:
        """``attention_mix(x)[samples, tokens]``, ``(R, D)``, with queries for those R rows only.

        Keys and values come from every token; the query projection and the attention run for the requested rows,
        padded per sample to the largest count (rows may come in any order). ``max_rows``: an upper bound of the
        rows of one sample, known to the caller (then nothing is read back from the device); by default the count.
        """
        attn = self.attn
        batch, n_tokens, dims = x.shape
        heads, head_dims = attn.num_heads, attn.head_dims
        normed = self.ln1(x)
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

    def attn_output(self, mixed: torch.Tensor) -> torch.Tensor:
        """``gamma1(proj(mixed))``: the attention branch after :meth:`attention_mix` (any leading shape).

        ``proj_drop`` (a dropout) commutes with the per-channel scale, so the scale is folded into ``proj``.
        """
        attn = self.attn
        return attn.proj_drop(scaled_linear(attn.proj, attn.gamma1, mixed))

    def attn_branch(self, x: torch.Tensor) -> torch.Tensor:
        """``gamma1(proj(attention(ln1(x))))``: mmpretrain's ``MultiheadAttention.forward`` without its
        DropPath, by the fused products."""
        return self.attn_output(self.attention_mix(x))

    def ffn_branch(self, x: torch.Tensor) -> torch.Tensor:
        """``gamma2(mlp(ln2(x)))``: mmcv's ``FFN.forward`` without its identity and DropPath."""
        ffn = self.ffn
        *hidden, last_fc, last_drop = ffn.layers  # mmcv's FFN: [Sequential(fc, act, drop)] * n, fc, drop
        h = self.ln2(x)
        for block in hidden:  # Sequential(fc, act, drop)
            h = linear_module(block, h)
        return last_drop(scaled_linear(last_fc, ffn.gamma2, h))

    def forward_fused(self, x: torch.Tensor, branches: Optional[tuple] = None) -> torch.Tensor:
        """The plain forward's function by the fused branches (stochastic depth on the kept samples only);
        ``branches``: ``(attn_fn, ffn_fn)`` taking ``(block, x)``, e.g. :func:`compiled_branches`."""
        drop_prob = self._active_drop_prob()
        if drop_prob <= 0.0 and branches is None and self.observed():
            return self(x)  # the plain forward, so its modules' hooks fire (e.g. attention recording)
        attn_fn, ffn_fn = branches or (ViTBlock.attn_branch, ViTBlock.ffn_branch)
        x = add_residual(x, lambda t: attn_fn(self, t), drop_prob, self.drop_path_mode)
        return add_residual(x, lambda t: ffn_fn(self, t), drop_prob, self.drop_path_mode)

    # view groups in one pass ------------------------------------------------------------------------------------

    def _group_attention(self, rows: torch.Tensor, groups) -> torch.Tensor:
        """``gamma1(proj(attention(ln1(x))))`` for the rows of view groups: the linear products over all rows at
        once, the attention per group."""
        attn = self.attn
        parts = split_group_heads(linear_module(attn.qkv, self.ln1(rows)), groups, 3, attn.num_heads)
        mixed = merge_heads([attend(attn, *parts[3 * i:3 * i + 3]) for i in range(len(groups))])
        return self.attn_output(mixed)

    def forward_groups(self, x: torch.Tensor, groups: Sequence[Tuple[int, int]],
                       branches: Optional[tuple] = None) -> torch.Tensor:
        """The block over several view groups at once (DINOv2's ``forward_features_list``).

        ``x``: ``(rows, D)``, the tokens of the groups ``groups`` = ``[(B_i, T_i), ...]`` (e.g. the global and
        the local views) one group after another. The layer norms, linear products and GELU run once over the
        rows of every group, the attention per group. Stochastic depth draws per group in the order of
        ``[self(x_i) for x_i in groups]`` (attention, then FFN, group after group), so a seeded step keeps the
        same samples as that loop and gives its result up to float rounding. With ``branches`` (compiled
        branches) or hooks watching the block, it is that loop.
        """
        groups = [(int(b), int(t)) for b, t in groups]
        if branches is not None or self.observed():
            views = x.split([b * t for b, t in groups])
            return torch.cat([self.forward_fused(v.view(b, t, -1), branches).flatten(0, 1)
                              for v, (b, t) in zip(views, groups)])
        drop_prob = self._active_drop_prob()
        if drop_prob > 0.0 and self.drop_path_mode == 'bernoulli':
            return self._bernoulli_groups(x, groups, drop_prob)
        draws = []  # per group: (attention's kept samples, scale), (FFN's kept samples, scale)
        for batch, _ in groups:
            for _ in range(2):
                if drop_prob <= 0.0:
                    draws.append((None, 1.0))
                    continue
                index, scale = kept_samples(batch, drop_prob, self.drop_path_mode, x)
                draws.append((None if index.numel() == batch and scale == 1.0 else index, scale))
        x = _group_branch(x, groups, draws[0::2], self._group_attention)
        return _group_branch(x, groups, draws[1::2], lambda rows, kept: self.ffn_branch(rows))

    def _bernoulli_groups(self, x: torch.Tensor, groups, drop_prob: float) -> torch.Tensor:
        """:meth:`forward_groups` with mmcv's stochastic depth: both branches over every row, a dropped sample's
        rows times zero; drawn in the order of the loop over the groups (each group's attention, then FFN)."""
        masks = [_draw_kept(batch, drop_prob, 'bernoulli', x)[0].repeat_interleave(tokens)
                 for batch, tokens in groups for _ in range(2)]
        x = x + mmcv_drop_path(self._group_attention(x, groups), torch.cat(masks[0::2]), drop_prob)
        return x + mmcv_drop_path(self.ffn_branch(x), torch.cat(masks[1::2]), drop_prob)

    # the rows a loss reads --------------------------------------------------------------------------------------

    def forward_rows(self, x: torch.Tensor, samples: torch.Tensor, tokens: torch.Tensor,
                     max_rows: Optional[int] = None) -> torch.Tensor:
        """``self(x)[samples, tokens]``, ``(R, D)``, computing only those R output rows.

        ``samples`` / ``tokens``: long ``(R,)`` row indices (sample, token) into ``x`` ``(B, N, D)``, in any
        order. Keys and values still come from every token of ``x``; the queries, the attention, the output
        projection and the FFN run for the R rows only (:meth:`attention_rows`; ``max_rows`` as there).
        Stochastic depth draws exactly as the plain forward does (one draw per branch over the whole batch), so a
        seeded step keeps the samples it would have kept; the branches run on every requested row and a dropped
        sample's rows get a zero factor (which rows are dropped is not read back to the host; these few rows are
        a small share of the step).
        """
        drop_prob = self._active_drop_prob()
        rows = x[samples, tokens]
        if drop_prob <= 0.0:
            rows = rows + self.attn_output(self.attention_rows(x, samples, tokens, max_rows))
            return rows + self.ffn_branch(rows)

        def add_scaled(base: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
            # the factor (a float scale) applied in float32 at least, as index_add's alpha would be
            factor = sample_factors(x.shape[0], drop_prob, self.drop_path_mode, x)[samples, None]
            dtype = torch.promote_types(base.dtype, torch.float32)
            return torch.addcmul(base.to(dtype), branch.to(dtype), factor.to(dtype)).to(base.dtype)

        rows = add_scaled(rows, self.attn_output(self.attention_rows(x, samples, tokens, max_rows)))
        return add_scaled(rows, self.ffn_branch(rows))

def compiled_branches(**compile_kwargs) -> tuple:
    """``torch.compile``d :meth:`ViTBlock.attn_branch` and :meth:`ViTBlock.ffn_branch` (dynamic shapes by
    default), for :meth:`ViTBlock.forward_groups`' ``branches``."""
    compile_kwargs.setdefault('dynamic', True)
    return (torch.compile(ViTBlock.attn_branch, **compile_kwargs),
            torch.compile(ViTBlock.ffn_branch, **compile_kwargs))
