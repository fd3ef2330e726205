"""ViT whose patch position embeddings are sampled from a position field at each view's box."""
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from mmpretrain.models.backbones import VisionTransformer
from mmpretrain.registry import MODELS
from torch.utils.checkpoint import checkpoint

from ..utils.archs import vit_arch
from ..utils.pos_field import POS_EMBED_TYPES, PositionField, patch_positions
from .vit_block import DROP_PATH_MODES, ViTBlock, compiled_branches

_CLS_ONLY = object()  # keep_patches sentinel of forward_cls: no patch token


def _init_linears_as_dinov2(module: nn.Module) -> None:
    """timm's / DINOv2's ``init_weights_vit_timm``: Linear weights trunc-normal std 0.02, biases 0."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


@MODELS.register_module()
class PosFieldViT(VisionTransformer):
    """Vision Transformer with crop-aligned (field-sampled) position embeddings.

    Args:
        arch: a name of :data:`~projects.posfield.models.utils.archs.VIT_ARCHS` (``'ViT-S'``, ``'ViT-B'``,
            ``'ViT-L'``, ``'ViT-mini'``, ``'ViT-micro'``) or a dict of its four sizes. mmpretrain's own names are
            refused: its ``'small'`` is not ViT-S/16.
        pos_embed_type: ``'field'`` (the method: positions sampled from :class:`PositionField` at the patch
            centres of each view's canvas box, mirrored for flipped views) or ``'interpolate'`` (the
            DINOv2-dagger baseline: an ordinary learned ``pos_embed`` resized bicubically per resolution).
        pos_field: kwargs of :class:`PositionField` (``field_size``, ``mode``) for ``'field'``.
        with_cp: activation checkpointing of the transformer layers while training.
        drop_path_mode: how stochastic depth skips the dropped samples' compute (``'bernoulli'``: mmcv's
            ``DropPath`` draw; ``'dinov2'``: DINOv2's fixed kept count), see :mod:`.vit_block`.
        fused: run the blocks (:class:`~.vit_block.ViTBlock`) by their fused forwards: every view group in one
            pass (:meth:`~.vit_block.ViTBlock.forward_groups`) and the last block on the rows a loss reads
            (:meth:`~.vit_block.ViTBlock.forward_rows`). ``False``: each block's plain forward on each group in
            turn (layer by layer, so stochastic depth draws in the same order), the last block on every token;
            the same function (``tests/test_models/test_fast_layers.py``).
        compile_layers: ``torch.compile`` the layers' residual branches (opt-in, ``fused`` only; the first steps
            compile).
        drop_path_uniform: every layer drops with ``drop_path_rate`` (DINOv2's ``drop_path_uniform``) instead
            of mmpretrain's linear increase from 0 at the first layer.
        Other args: mmpretrain's :class:`VisionTransformer` (``layer_scale_init_value`` 1e-5 and
        ``drop_path_rate`` 0.1 by default, as in the spec).

    Tokens: ``[CLS]`` (with its own learned position ``cls_pos`` in field mode) followed by the patches.
    ``mask_token`` replaces a content-masked patch embedding before positions are added;
    ``pos_mask_token`` replaces a position-masked patch's position embedding.
    """

    def __init__(self, arch='ViT-S', img_size=224, patch_size=16, pos_embed_type: str = 'field',
                 pos_field: Optional[dict] = None, layer_scale_init_value: float = 1e-5,
                 drop_path_rate: float = 0.1, with_cp: bool = False, out_type: str = 'cls_token',
                 drop_path_mode: str = 'bernoulli', compile_layers: bool = False,
                 drop_path_uniform: bool = False, fused: bool = True, **kwargs):
        if pos_embed_type not in POS_EMBED_TYPES:
            raise ValueError(f'pos_embed_type must be one of {POS_EMBED_TYPES}, got {pos_embed_type!r}')
        if drop_path_mode not in DROP_PATH_MODES:
            raise ValueError(f'drop_path_mode must be one of {DROP_PATH_MODES}, got {drop_path_mode!r}')
        if compile_layers and not fused:
            raise ValueError('compile_layers=True compiles the fused branches; it needs fused=True')
        super().__init__(arch=vit_arch(arch), img_size=img_size, patch_size=patch_size,
                         layer_scale_init_value=layer_scale_init_value, drop_path_rate=drop_path_rate,
                         out_type=out_type, with_cls_token=True, **kwargs)
        dims = self.embed_dims
        self.pos_embed_type = pos_embed_type
        self.with_cp = with_cp
        self.drop_path_mode = drop_path_mode
        self.fused = fused
        self._branches = compiled_branches() if compile_layers else None  # functions, not modules: no params
        self.layers = self._vit_blocks(kwargs, drop_path_rate, layer_scale_init_value, drop_path_mode)
        if self.frozen_stages > 0:  # mmpretrain froze the layers it built
            self._freeze_stages()
        if drop_path_uniform:
            for layer in self.layers:
                layer.set_drop_path(drop_path_rate)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dims))
        if pos_embed_type == 'field':
            self.pos_embed = None  # positions come from the field; no unused parameter
            self.pos_field = PositionField(dims, **(pos_field or {}))
            self.cls_pos = nn.Parameter(torch.zeros(1, 1, dims))
            self.pos_mask_token = nn.Parameter(torch.zeros(1, 1, dims))

    def _vit_blocks(self, kwargs: dict, drop_path_rate: float, layer_scale_init_value: float,
                    drop_path_mode: str) -> nn.ModuleList:
        """mmpretrain's layers rebuilt as :class:`ViTBlock` (its subclass: the same modules and parameter names),
        with the arguments ``VisionTransformer.__init__`` gave each of them."""
        layer_cfgs = kwargs.get('layer_cfgs', dict())
        if isinstance(layer_cfgs, dict):
            layer_cfgs = [layer_cfgs] * self.num_layers
        rates = np.linspace(0, drop_path_rate, self.num_layers)
        blocks = nn.ModuleList()
        for i in range(self.num_layers):
            cfg = dict(embed_dims=self.embed_dims, num_heads=self.arch_settings['num_heads'],
                       feedforward_channels=self.arch_settings['feedforward_channels'],
                       layer_scale_init_value=layer_scale_init_value, drop_rate=kwargs.get('drop_rate', 0.),
                       drop_path_rate=rates[i], qkv_bias=kwargs.get('qkv_bias', True),
                       norm_cfg=kwargs.get('norm_cfg', dict(type='LN', eps=1e-6)), drop_path_mode=drop_path_mode)
            cfg.update(layer_cfgs[i])
            blocks.append(ViTBlock(**cfg))
        return blocks

    def init_weights(self):
        """DINOv2's initialisation (``DinoVisionTransformer.init_weights``): every Linear weight trunc-normal std
        0.02 with zero bias, [CLS] N(0, 1e-6), mask token zero, position embedding trunc-normal std 0.02; the patch
        embedding keeps PyTorch's Conv2d default and the layer scales their init value. The field, [CLS] position
        and POSMASK token follow the position embedding and the mask token."""
        super().init_weights()
        if isinstance(self.init_cfg, dict) and self.init_cfg.get('type') == 'Pretrained':
            return
        _init_linears_as_dinov2(self)
        nn.init.normal_(self.cls_token, std=1e-6)
        nn.init.zeros_(self.mask_token)
        if self.pos_embed_type == 'field':
            nn.init.trunc_normal_(self.cls_pos, std=0.02)
            nn.init.zeros_(self.pos_mask_token)
            if self.pos_field.mode == 'learnable':
                nn.init.trunc_normal_(self.pos_field.field, std=0.02)

    def train(self, mode: bool = True):
        super().train(mode)  # mmpretrain's BaseBackbone.train returns None, which breaks `m.eval()` chains
        return self

    def _positions(self, batch: int, hw: Tuple[int, int], boxes, flips) -> Tuple[torch.Tensor, torch.Tensor]:
        """(cls position (1, 1, D), patch positions (1|B, N, D)) from :func:`patch_positions`."""
        if self.pos_embed_type == 'interpolate':
            extra = self.num_extra_tokens
            pos = patch_positions('interpolate', hw, batch, pos_embed=self.pos_embed[:, extra:],
                                  pos_embed_hw=self.patch_resolution, interpolate_mode=self.interpolate_mode)
            return self.pos_embed[:, :1], pos
        return self.cls_pos, patch_positions('field', hw, batch, pos_field=self.pos_field, boxes=boxes, flips=flips)

    def forward_tokens(self, x: torch.Tensor, boxes: Optional[torch.Tensor] = None,
                       flips: Optional[torch.Tensor] = None, content_mask: Optional[torch.Tensor] = None,
                       pos_mask: Optional[torch.Tensor] = None,
                       keep_patches: Optional[torch.Tensor] = None,
                       keep_max_per_view: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Encode views; returns final-normed ``(cls (B, D), patches (B, N, D))``.

        ``boxes`` ``(B, 4)`` canvas boxes (None: the whole canvas), ``flips`` ``(B,)`` bool,
        ``content_mask`` / ``pos_mask`` ``(B, h, w)`` bool on the patch grid.
        ``keep_patches``: return only these patch tokens, ``(n_kept, D)``, and (``fused``) run the last layer's
        projection and FFN only on them and the [CLS] tokens (:meth:`ViTBlock.forward_rows`; a pre-training loss
        reads no other token of the last layer). Either long ``(n_kept,)`` flat indices ``view * N + patch`` in
        increasing order (the training step's form: :attr:`MultiViewBatch.kept_rows`; no host synchronisation,
        given ``keep_max_per_view``, the most kept patches of one view) or a ``(B, N)`` bool mask
        (``patches[keep]`` order; converted with a ``nonzero``). That layer is not activation-checkpointed under
        ``with_cp``.
        """
        return self.forward_token_groups([dict(x=x, boxes=boxes, flips=flips, content_mask=content_mask,
                                               pos_mask=pos_mask, keep_patches=keep_patches,
                                               keep_max_per_view=keep_max_per_view)])[0]

    def forward_token_groups(self, groups: Sequence[dict]) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """:meth:`forward_tokens` of several view groups in one pass (e.g. the global views, then each size of
        local views); each group a dict of its keyword arguments, plus ``cls_only=True`` for :meth:`forward_cls`.

        With ``fused`` the layers run over the tokens of every group at once (:meth:`ViTBlock.forward_groups`:
        one linear product per layer instead of one per group), else each layer's plain forward on each group in
        turn; the results are those of one :meth:`forward_tokens` per group up to float rounding. Stochastic
        depth draws layer by layer, and within a layer group by group (the order of running each layer on each
        group in turn, fused or not), so with drop-path on, the random draws differ from those of separate
        passes, not their distribution.
        """
        embedded = []
        for group in groups:
            group = dict(group)
            cls_only = group.pop('cls_only', False)
            keep = group.pop('keep_patches', None)
            keep_max = group.pop('keep_max_per_view', None)
            unknown = set(group) - {'x', 'boxes', 'flips', 'content_mask', 'pos_mask'}
            if unknown or 'x' not in group:
                raise ValueError(f'a view group takes x, boxes, flips, content_mask, pos_mask, keep_patches, '
                                 f'keep_max_per_view and cls_only; got {sorted(group)}'
                                 f'{" without x" if "x" not in group else ""}')
            tokens, _ = self._embed(group['x'], group.get('boxes'), group.get('flips'), group.get('content_mask'),
                                    group.get('pos_mask'))
            embedded.append((tokens, (_CLS_ONLY, 0) if cls_only else (keep, keep_max)))
        shapes = [tuple(tokens.shape[:2]) for tokens, _ in embedded]
        full = all(keep is None for _, (keep, _) in embedded)
        last = len(self.layers) if full else len(self.layers) - 1  # the last layer per group, on its rows only
        if self.fused:
            rows = torch.cat([tokens.flatten(0, 1) for tokens, _ in embedded]) if len(embedded) > 1 else \
                embedded[0][0].flatten(0, 1)
            for layer in self.layers[:last]:
                rows = self._run_layer(layer.forward_groups, rows, shapes, self._branches)
            views = [v.view(b, t, -1) for v, (b, t) in zip(rows.split([b * t for b, t in shapes]), shapes)]
        else:
            views = [tokens for tokens, _ in embedded]
            for layer in self.layers[:last]:  # layer by layer: stochastic depth draws in the fused order
                views = [self._run_layer(layer, tokens) for tokens in views]
        outs = []
        for tokens, (_, keep) in zip(views, embedded):
            if full:
                if self.final_norm:
                    tokens = self.ln1(tokens)
                outs.append((tokens[:, 0], tokens[:, 1:]))
                continue
            outs.append(self._last_layer_rows(tokens, *keep))
        return outs

    def _last_layer_rows(self, tokens: torch.Tensor, keep_patches,
                         keep_max: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """The last layer on the [CLS] tokens and the ``keep_patches`` patches (None: every patch)."""
        batch, n_patches = tokens.shape[0], tokens.shape[1] - 1
        device = tokens.device
        if keep_patches is None:
            keep_patches, keep_max = torch.arange(batch * n_patches, device=device), n_patches
        elif keep_patches is _CLS_ONLY:
            keep_patches, keep_max = torch.zeros(0, dtype=torch.long, device=device), 0
        elif keep_patches.dtype == torch.bool:
            if tuple(keep_patches.shape) != (batch, n_patches):
                raise ValueError(f'keep_patches must have shape {(batch, n_patches)} (views, patches), '
                                 f'got {tuple(keep_patches.shape)}')
            keep_patches = keep_patches.flatten().nonzero().flatten()
        elif keep_patches.dim() != 1 or keep_patches.dtype != torch.long:
            raise ValueError(f'keep_patches must be a ({batch}, {n_patches}) bool mask or 1-d long flat indices '
                             f'view * {n_patches} + patch, got {keep_patches.dtype} of shape '
                             f'{tuple(keep_patches.shape)}')
        keep_patches = keep_patches.to(device)
        # Rows in (view, token) order: each view's [CLS] token, then its kept patches (token 1 + patch). Where each
        # row goes follows from the per-view counts, computed on the device (no count is read back).
        views = keep_patches // n_patches
        counts = torch.zeros(batch, dtype=torch.long, device=device).index_add_(0, views, torch.ones_like(views))
        cls_at = torch.arange(batch, device=device) + (counts.cumsum(0) - counts)
        kept_at = torch.arange(keep_patches.numel(), device=device) + views + 1
        samples = torch.empty(batch + keep_patches.numel(), dtype=torch.long, device=device)
        samples.index_put_((cls_at,), torch.arange(batch, device=device)).index_put_((kept_at,), views)
        token_index = torch.zeros_like(samples).index_put_((kept_at,), keep_patches % n_patches + 1)
        if self.fused:
            rows = self.layers[-1].forward_rows(tokens, samples, token_index,
                                                max_rows=None if keep_max is None else keep_max + 1)
        else:
            rows = self.layers[-1](tokens)[samples, token_index]
        if self.final_norm:
            rows = self.ln1(rows)
        return rows.index_select(0, cls_at), rows.index_select(0, kept_at)

    def forward_cls(self, x: torch.Tensor, boxes: Optional[torch.Tensor] = None,
                    flips: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Final-normed [CLS] tokens ``(B, D)``; the last layer computes nothing else (see ``keep_patches``)."""
        return self.forward_tokens(x, boxes, flips, keep_patches=_CLS_ONLY)[0]

    def _embed(self, x, boxes=None, flips=None, content_mask=None, pos_mask=None):
        batch = x.shape[0]
        patches, hw = self.patch_embed(x)
        if content_mask is not None:
            m = self._check_mask(content_mask, batch, hw, 'content_mask').unsqueeze(-1)
            patches = torch.where(m, self.mask_token.to(patches.dtype), patches)
        cls_pos, pos = self._positions(batch, hw, boxes, flips)
        if pos_mask is not None and self.pos_embed_type != 'field':
            if bool(pos_mask.any()):
                raise ValueError("pos_mask needs pos_embed_type='field' (the baseline has no position masking)")
            pos_mask = None  # an all-False mask is a no-op in the baseline
        if pos_mask is not None:
            m = self._check_mask(pos_mask, batch, hw, 'pos_mask').unsqueeze(-1)
            pos = torch.where(m, self.pos_mask_token.to(pos.dtype), pos)
        patches = patches + pos.to(patches.dtype)
        cls = (self.cls_token + cls_pos).to(patches.dtype).expand(batch, -1, -1)
        tokens = self.pre_norm(self.drop_after_pos(torch.cat([cls, patches], dim=1)))
        return tokens, hw

    @staticmethod
    def _check_mask(mask, batch, hw, name):
        if tuple(mask.shape) != (batch, *hw):
            raise ValueError(f'{name} must have shape {(batch, *hw)} (batch, patch grid), got {tuple(mask.shape)}')
        return mask.to(torch.bool).flatten(1)

    def _run_layer(self, forward, tokens, *args):
        """``forward(tokens, *args)`` (a block's forward), activation-checkpointed under ``with_cp``."""
        if self.with_cp and self.training and tokens.requires_grad:
            return checkpoint(forward, tokens, *args, use_reentrant=False)
        return forward(tokens, *args)

    def forward(self, x):
        """mmpretrain's backbone API (tuple of outputs at ``out_indices``), whole-canvas positions."""
        tokens, hw = self._embed(x)
        shape = tokens.shape
        outs = []
        for i, layer in enumerate(self.layers):
            if self.fused:
                tokens = self._run_layer(layer.forward_groups, tokens.flatten(0, 1), [shape[:2]],
                                         self._branches).view(shape)
            else:
                tokens = self._run_layer(layer, tokens)
            if i == len(self.layers) - 1 and self.final_norm:
                tokens = self.ln1(tokens)
            if i in self.out_indices:
                outs.append(self._format_output(tokens, hw))
        return tuple(outs)

    def get_layer_depth(self, param_name: str, prefix: str = ''):
        """Layer-wise lr decay depth: the field and all tokens sit with the patch embedding at depth 0."""
        num_layers = self.num_layers + 2
        if param_name.startswith(prefix):
            name = param_name[len(prefix):]
            if name in ('cls_pos', 'mask_token', 'pos_mask_token') or name.startswith('pos_field.'):
                return 0, num_layers
        return super().get_layer_depth(param_name, prefix)
