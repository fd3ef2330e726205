"""ViTDet-style plain ViT for mmdet with position embeddings from the pre-trained position field."""
import logging
import os.path as osp
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.bricks.transformer import PatchEmbed  # the one mmpretrain's ViT uses: same names
from mmdet.registry import MODELS
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch.utils.checkpoint import checkpoint

from projects.common.backbone_loader import (
    CheckpointMismatchError,
    load_backbone_weights,
    read_state_dict,
    select_backbone,
)

from ..batch.placement import DEFAULT_PLACEMENT, Placement, mean_placement
from ..models.backbones.vit_block import ViTBlock
from ..models.utils.archs import vit_arch
from ..models.utils.pos_field import PositionField, patch_positions, resize_grid_embedding

# ViTDet's attention size for its global blocks: the fixed input frame (1024 px) over the patch size.
DEFAULT_IMG_SIZE = 1024


def get_rel_pos(q_size: int, k_size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """Relative position embeddings ``(q_size, k_size, C)`` for one axis, from a table of ``2 * size - 1``
    offsets, linearly resized when the grid differs from the table's (ViTDet / SAM ``get_rel_pos``)."""
    max_dist = 2 * max(q_size, k_size) - 1
    if rel_pos.shape[0] != max_dist:
        rel_pos = F.interpolate(rel_pos.t().unsqueeze(0).float(), size=max_dist, mode='linear')[0].t()
    q_coords = torch.arange(q_size, device=rel_pos.device)[:, None] * max(k_size / q_size, 1.0)
    k_coords = torch.arange(k_size, device=rel_pos.device)[None, :] * max(q_size / k_size, 1.0)
    relative = (q_coords - k_coords) + (k_size - 1) * max(q_size / k_size, 1.0)
    return rel_pos[relative.long()]


def decomposed_rel_pos_bias(q: torch.Tensor, rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor,
                            hw: Tuple[int, int]) -> torch.Tensor:
    """ViTDet's decomposed relative position bias (MViTv2; detectron2/SAM ``add_decomposed_rel_pos``) as an
    additive attention mask: ``q`` ``(B, heads, h * w, C)`` (before the 1/sqrt(C) scaling) ->
    ``(B, heads, h * w, h * w)``, ``bias[(i, j), (k, l)] = q_ij . Rh[i - k] + q_ij . Rw[j - l]``."""
    h, w = hw
    b, heads, n, c = q.shape
    r_q = q.reshape(b * heads, h, w, c)
    rel_h = torch.einsum('bhwc,hkc->bhwk', r_q, get_rel_pos(h, h, rel_pos_h).to(q.dtype))
    rel_w = torch.einsum('bhwc,wkc->bhwk', r_q, get_rel_pos(w, w, rel_pos_w).to(q.dtype))
    return (rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]).reshape(b, heads, n, n)


def window_partition(x: torch.Tensor, window: int) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """(B, H, W, C) -> (B * nW, window * window, C), zero-padding H and W up to multiples of the window."""
    b, h, w, c = x.shape
    pad_h, pad_w = (-h) % window, (-w) % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window, window, wp // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window * window, c), (hp, wp)


def window_unpartition(x: torch.Tensor, window: int, padded_hw: Tuple[int, int], hw: Tuple[int, int]) -> torch.Tensor:
    hp, wp = padded_hw
    b = x.shape[0] // ((hp // window) * (wp // window))
    x = x.view(b, hp // window, wp // window, window, window, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, hp, wp, -1)[:, :hw[0], :hw[1]]


@MODELS.register_module()
class WindowedViTBlock(ViTBlock):
    """ViTDet's block: :class:`ViTBlock` (the same modules and parameter names) on ``(B, H, W, C)`` token maps,
    its attention within non-overlapping ``window_size`` windows (zero-padded; ``window_size=0``: global), plus
    ViTDet's decomposed relative position bias where the attention module carries ``rel_pos_h`` / ``rel_pos_w``.
    Stochastic depth per image, after the windows are merged again (as ViTDet's ``Block``)."""

    def __init__(self, *args, window_size: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.window_size = window_size

    def attention_bias(self, q: torch.Tensor, hw: Optional[Tuple[int, int]]) -> Optional[torch.Tensor]:
        if getattr(self.attn, 'rel_pos_h', None) is None:
            return None
        return decomposed_rel_pos_bias(q, self.attn.rel_pos_h, self.attn.rel_pos_w, hw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        y = self.ln1(x)
        if self.window_size:
            y, padded = window_partition(y, self.window_size)
            y = self.attention(y, (self.window_size, self.window_size))
            y = window_unpartition(y, self.window_size, padded, (h, w))
        else:
            y = self.attention(y.reshape(b, h * w, c), (h, w)).reshape(b, h, w, c)
        x = x + self._drop_path(y, self.attn.out_drop)
        return self.ffn(self.ln2(x), identity=x)


@MODELS.register_module()
class PosFieldViTDet(BaseModule):
    """Plain ViT backbone for Mask R-CNN (ViTDet): windowed attention except in ``global_attn_indexes``,
    one stride-``patch_size`` output map, position embeddings sampled from the pre-trained field.

    Parameter names equal :class:`~projects.posfield.models.PosFieldViT`'s (``patch_embed``, ``layers.N``, ``ln1``,
    ``pos_field.field`` or ``pos_embed``), so a pre-trained backbone maps one to one.

    Args:
        arch: a name of :data:`~projects.posfield.models.utils.archs.VIT_ARCHS` (``'ViT-S'``, ``'ViT-B'``, ...)
            or a dict of the four sizes, exactly as the pre-training backbone takes it.
        pos_embed_type: ``'field'`` (sample ``pos_field`` over the input) or ``'interpolate'`` (a plain ViT
            checkpoint's ``pos_embed``, resized bicubically for the input's grid).
        pos_field: kwargs of :class:`PositionField`; ``field_size=None`` takes the field size from the
            ``init_cfg`` checkpoint (so a 19 x 19 field ablation fine-tunes with the same config).
        placement: ``'whole'`` (the image covers the whole canvas, default) or ``'mean'`` (the mean
            pre-training placement for ``placement_cfg``, e.g. Beta(2, 5)).
        use_rel_pos: ViTDet's decomposed relative position bias in every block (windowed blocks: a
            ``window_size`` table, global blocks: ``img_size // patch_size``), zero-initialised; it is not in a
            pre-trained checkpoint and starts at zero there too.
        img_size: the fixed (padded) input size, for the global blocks' relative position tables.
        pretrain_img_size: grid of a plain ``pos_embed`` (``'interpolate'`` only).
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH, key='teacher'|'student')`` loads with a coverage
            check (:func:`load_backbone_weights`), unlike mmengine's silent ``PretrainedInit``.
    """

    def __init__(self, arch='ViT-B', patch_size: int = 16, window_size: int = 14,
                 global_attn_indexes: Sequence[int] = (2, 5, 8, 11), pos_embed_type: str = 'field',
                 pos_field: Optional[dict] = None, placement: str = 'whole', placement_cfg: Optional[dict] = None,
                 use_rel_pos: bool = False, img_size: int = DEFAULT_IMG_SIZE, pretrain_img_size: int = 224,
                 drop_path_rate: float = 0.1, layer_scale_init_value: float = 1e-5, with_cp: bool = False,
                 final_norm: bool = True, init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=None)
        settings = vit_arch(arch)
        if pos_embed_type not in ('field', 'interpolate'):
            raise ValueError(f"pos_embed_type must be 'field' or 'interpolate', got {pos_embed_type!r}")
        if placement not in ('whole', 'mean'):
            raise ValueError(f"placement must be 'whole' or 'mean', got {placement!r}")
        dims, depth = settings['embed_dims'], settings['num_layers']
        bad = [i for i in global_attn_indexes if not 0 <= i < depth]
        if bad:
            raise ValueError(f'global_attn_indexes {bad} out of range for {depth} layers')
        self.embed_dims, self.patch_size, self.window_size = dims, patch_size, window_size
        self.global_attn_indexes = tuple(global_attn_indexes)
        self.pos_embed_type, self.with_cp, self.use_rel_pos = pos_embed_type, with_cp, use_rel_pos
        self.pretrained_cfg = init_cfg
        self.patch_embed = PatchEmbed(in_channels=3, input_size=pretrain_img_size, embed_dims=dims,
                                      conv_type='Conv2d', kernel_size=patch_size, stride=patch_size)
        if pos_embed_type == 'field':
            field_cfg = dict(pos_field or {})
            self.field_size_from_checkpoint = 'field_size' in field_cfg and field_cfg['field_size'] is None
            if self.field_size_from_checkpoint:
                size = self._field_size_from_checkpoint(init_cfg)
                if size is None:
                    field_cfg.pop('field_size')
                else:
                    field_cfg['field_size'] = size
            self.pos_field = PositionField(dims, **field_cfg)
            self._register_load_state_dict_pre_hook(self._adopt_field_size)
            self.placement = Placement(0.0, 0.0, 1.0) if placement == 'whole' else mean_placement(
                **(placement_cfg or DEFAULT_PLACEMENT))
        else:
            self.pretrain_grid = (pretrain_img_size // patch_size, ) * 2
            self.pos_embed = nn.Parameter(torch.zeros(1, self.pretrain_grid[0] * self.pretrain_grid[1], dims))
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        dpr = torch.linspace(0, drop_path_rate, depth).tolist()
        self.layers = nn.ModuleList(
            WindowedViTBlock(embed_dims=dims, num_heads=settings['num_heads'],
                             feedforward_channels=settings['feedforward_channels'],
                             layer_scale_init_value=layer_scale_init_value, drop_path_rate=dpr[i],
                             norm_cfg=dict(type='LN', eps=1e-6),
                             window_size=0 if i in self.global_attn_indexes else window_size)
            for i in range(depth))
        if use_rel_pos:
            head_dims = dims // settings['num_heads']
            for i, layer in enumerate(self.layers):
                size = img_size // patch_size if i in self.global_attn_indexes else window_size
                # registered on the attention module: ``layers.N.attn.rel_pos_h``, as ViTDet names them
                layer.attn.rel_pos_h = nn.Parameter(torch.zeros(2 * size - 1, head_dims))
                layer.attn.rel_pos_w = nn.Parameter(torch.zeros(2 * size - 1, head_dims))
        self.ln1 = nn.LayerNorm(dims, eps=1e-6) if final_norm else nn.Identity()

    @staticmethod
    def _field_size_from_checkpoint(init_cfg: Optional[dict]) -> Optional[Tuple[int, int]]:
        """``pos_field.field_size=None``: the ``(Hf, Wf)`` of the pre-trained field in ``init_cfg``'s checkpoint.

        It is read when the model is built, before the optimiser and DDP see the parameter. When the file is not
        there (building a detector only to test it, say), the field starts at the default size and takes the size
        of the first state dict loaded into it (the fine-tuned detector's); training still needs the file."""
        if not (isinstance(init_cfg, dict) and init_cfg.get('checkpoint')):
            raise ValueError('PosFieldViTDet: pos_field.field_size=None takes the field size from the pre-trained '
                             'checkpoint, but init_cfg names none; set pos_field.field_size (e.g. 50) for a '
                             'randomly initialised backbone')
        path = init_cfg['checkpoint']
        if not osp.isfile(path):
            print_log(f'PosFieldViTDet: {path} not found; the position field takes its size from the first '
                      f'checkpoint loaded into the model', logger='current', level=logging.WARNING)
            return None
        state, where = select_backbone(read_state_dict(path), init_cfg.get('key', 'teacher'), path)
        field = state.get('pos_field.field')
        if field is None or field.ndim != 4:
            raise CheckpointMismatchError(
                f'{path} ({where}) has no position field (pos_field.field, shape (1, D, Hf, Wf)), so '
                f'pos_field.field_size=None cannot take its size from it; a plain ViT checkpoint needs '
                f"pos_embed_type='interpolate'")
        return int(field.shape[2]), int(field.shape[3])

    def _adopt_field_size(self, state_dict, prefix, *args):
        """With ``field_size=None``, a loaded field of another size replaces the placeholder's shape."""
        new = state_dict.get(prefix + 'pos_field.field')
        field = self.pos_field.field
        if not self.field_size_from_checkpoint or new is None or new.shape == field.shape:
            return
        if new.ndim != 4 or new.shape[:2] != field.shape[:2]:
            return  # a wrong width: left to the loader's shape check
        field.data = torch.zeros(new.shape, dtype=field.dtype, device=field.device)
        self.pos_field.field_size = tuple(new.shape[2:])
        print_log(f'PosFieldViTDet: position field resized to the loaded {tuple(new.shape[2:])}', logger='current')

    def rel_pos_names(self) -> Tuple[str, ...]:
        """Parameters initialised at fine-tuning (not in a pre-trained checkpoint): the relative position tables."""
        return tuple(name for name, _ in self.named_parameters() if '.rel_pos_' in name)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def init_weights(self):
        cfg = self.pretrained_cfg
        if cfg is None:
            for layer in self.layers:
                layer.init_weights()
            return
        if cfg.get('type') != 'Pretrained' or 'checkpoint' not in cfg:
            raise ValueError(f"PosFieldViTDet init_cfg must be dict(type='Pretrained', checkpoint=..., "
                             f"key='teacher'|'student'), got {cfg}")
        load_backbone_weights(self, cfg['checkpoint'], key=cfg.get('key', 'teacher'), adapt=self._adapt_pos_embed,
                              allow_missing=self.rel_pos_names())

    def _adapt_pos_embed(self, name, tensor, target):
        """A plain ViT's ``pos_embed`` (with [CLS], any grid) -> this backbone's grid, logged."""
        if name != 'pos_embed':
            return None
        grid = int(round((tensor.shape[1]) ** 0.5))
        extra = tensor.shape[1] - grid * grid
        if extra not in (0, 1) or tensor.shape[2] != target.shape[2]:
            return None
        out = resize_grid_embedding(tensor[:, extra:].float(), (grid, grid), self.pretrain_grid)
        print_log(f'pos_embed {tuple(tensor.shape)} resized to {tuple(out.shape)} (dropped {extra} [CLS] slot)',
                  logger='current')
        return out.to(tensor.dtype)

    def _positions(self, batch: int, hw: Tuple[int, int]) -> torch.Tensor:
        # ViTDet resizes its absolute positions bicubically without DINOv2's interpolate offset
        field = self.pos_embed_type == 'field'
        return patch_positions(self.pos_embed_type, hw, batch, pos_field=self.pos_field if field else None,
                               placement=self.placement if field else None,
                               pos_embed=None if field else self.pos_embed,
                               pos_embed_hw=None if field else self.pretrain_grid,
                               interpolate_offset=0.0).expand(batch, -1, -1)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor]:
        b = x.shape[0]
        tokens, hw = self.patch_embed(x)
        tokens = tokens + self._positions(b, hw).to(tokens.dtype)
        tokens = tokens.reshape(b, hw[0], hw[1], self.embed_dims)
        for layer in self.layers:
            if self.with_cp and self.training and tokens.requires_grad:
                tokens = checkpoint(layer, tokens, use_reentrant=False)
            else:
                tokens = layer(tokens)
        tokens = self.ln1(tokens)
        return (tokens.permute(0, 3, 1, 2).contiguous(), )

    def get_layer_depth(self, param_name: str, prefix: str = 'backbone.') -> Tuple[int, int]:
        """Depth for layer-wise lr decay: stem (patch embed, positions) 0, block i -> i + 1, rest last."""
        num = self.num_layers + 2
        if not param_name.startswith(prefix):
            return num - 1, num
        name = param_name[len(prefix):]
        if name.startswith(('patch_embed', 'pos_field', 'pos_embed')):
            return 0, num
        if name.startswith('layers.'):
            return int(name.split('.')[1]) + 1, num
        return num - 1, num
