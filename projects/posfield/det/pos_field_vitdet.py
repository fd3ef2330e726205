"""ViTDet-style plain ViT for mmdet with position embeddings from the pre-trained position field."""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from mmpretrain.models.backbones.vision_transformer import TransformerEncoderLayer
from mmcv.cnn.bricks.transformer import PatchEmbed  # the one mmpretrain's ViT uses: same names
from mmpretrain.models.utils import resize_pos_embed
from torch.utils.checkpoint import checkpoint

from ..models.utils.pos_field import Placement, PositionField, mean_placement
from ..models.utils.backbone_checkpoint import load_backbone_weights

ARCHS = {
    'small': dict(embed_dims=384, num_layers=12, num_heads=6, feedforward_channels=1536),
    'base': dict(embed_dims=768, num_layers=12, num_heads=12, feedforward_channels=3072),
    'large': dict(embed_dims=1024, num_layers=24, num_heads=16, feedforward_channels=4096),
}


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
class PosFieldViTDet(BaseModule):
    """Plain ViT backbone for Mask R-CNN (ViTDet): windowed attention except in ``global_attn_indexes``,
    one stride-``patch_size`` output map, position embeddings sampled from the pre-trained field.

    Parameter names equal :class:`~projects.posfield.models.PosFieldViT`'s (``patch_embed``, ``layers.N``, ``ln1``,
    ``pos_field.field`` or ``pos_embed``), so a pre-trained backbone maps one to one.

    Args:
        pos_embed_type: ``'field'`` (sample ``pos_field`` over the input) or ``'interpolate'`` (a plain ViT
            checkpoint's ``pos_embed``, resized bicubically for the input's grid).
        placement: ``'whole'`` (the image covers the whole canvas, default) or ``'mean'`` (the mean
            pre-training placement for ``placement_cfg``, e.g. Beta(2, 5)).
        pretrain_img_size: grid of a plain ``pos_embed`` (``'interpolate'`` only).
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH, key='teacher'|'student')`` loads with a coverage
            check (:func:`load_backbone_weights`), unlike mmengine's silent ``PretrainedInit``.
    """

    def __init__(self, arch='base', patch_size: int = 16, window_size: int = 14,
                 global_attn_indexes: Sequence[int] = (2, 5, 8, 11), pos_embed_type: str = 'field',
                 pos_field: Optional[dict] = None, placement: str = 'whole', placement_cfg: Optional[dict] = None,
                 pretrain_img_size: int = 224, drop_path_rate: float = 0.1, layer_scale_init_value: float = 1e-5,
                 with_cp: bool = False, final_norm: bool = True, init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=None)
        settings = dict(ARCHS[arch]) if isinstance(arch, str) else dict(arch)
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
        self.pos_embed_type, self.with_cp = pos_embed_type, with_cp
        self.pretrained_cfg = init_cfg
        self.patch_embed = PatchEmbed(in_channels=3, input_size=pretrain_img_size, embed_dims=dims,
                                      conv_type='Conv2d', kernel_size=patch_size, stride=patch_size)
        if pos_embed_type == 'field':
            self.pos_field = PositionField(dims, **(pos_field or {}))
            self.placement = Placement(0.0, 0.0, 1.0) if placement == 'whole' else mean_placement(
                **(placement_cfg or dict(mode='beta', beta=(2.0, 5.0))))
        else:
            self.pretrain_grid = (pretrain_img_size // patch_size, ) * 2
            self.pos_embed = nn.Parameter(torch.zeros(1, self.pretrain_grid[0] * self.pretrain_grid[1], dims))
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        dpr = torch.linspace(0, drop_path_rate, depth).tolist()
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(embed_dims=dims, num_heads=settings['num_heads'],
                                    feedforward_channels=settings['feedforward_channels'],
                                    layer_scale_init_value=layer_scale_init_value, drop_path_rate=dpr[i],
                                    norm_cfg=dict(type='LN', eps=1e-6)) for i in range(depth))
        self.ln1 = nn.LayerNorm(dims, eps=1e-6) if final_norm else nn.Identity()

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
        load_backbone_weights(self, cfg['checkpoint'], key=cfg.get('key', 'teacher'), adapt=self._adapt_pos_embed)

    def _adapt_pos_embed(self, name, tensor, target):
        """A plain ViT's ``pos_embed`` (with [CLS], any grid) -> this backbone's grid, logged."""
        if name != 'pos_embed':
            return None
        grid = int(round((tensor.shape[1]) ** 0.5))
        extra = tensor.shape[1] - grid * grid
        if extra not in (0, 1) or tensor.shape[2] != target.shape[2]:
            return None
        out = resize_pos_embed(tensor.float(), (grid, grid), self.pretrain_grid, mode='bicubic',
                               num_extra_tokens=extra)[:, extra:]
        from mmengine.logging import print_log
        print_log(f'pos_embed {tuple(tensor.shape)} resized to {tuple(out.shape)} (dropped {extra} [CLS] slot)',
                  logger='current')
        return out.to(tensor.dtype)

    def _positions(self, batch: int, hw: Tuple[int, int]) -> torch.Tensor:
        if self.pos_embed_type == 'field':
            return self.pos_field.for_whole_image(batch, hw, self.placement)
        pos = resize_pos_embed(self.pos_embed.float(), self.pretrain_grid, hw, mode='bicubic', num_extra_tokens=0)
        return pos.to(self.pos_embed.dtype).expand(batch, -1, -1)

    def _block(self, layer: TransformerEncoderLayer, x: torch.Tensor, windowed: bool) -> torch.Tensor:
        b, h, w, c = x.shape
        y = layer.ln1(x)
        if windowed:
            y, padded = window_partition(y, self.window_size)
            y = window_unpartition(layer.attn(y), self.window_size, padded, (h, w))
        else:
            y = layer.attn(y.reshape(b, h * w, c)).reshape(b, h, w, c)
        x = x + y
        return layer.ffn(layer.ln2(x), identity=x)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor]:
        b = x.shape[0]
        tokens, hw = self.patch_embed(x)
        tokens = tokens + self._positions(b, hw).to(tokens.dtype)
        tokens = tokens.reshape(b, hw[0], hw[1], self.embed_dims)
        for i, layer in enumerate(self.layers):
            windowed = i not in self.global_attn_indexes
            if self.with_cp and self.training and tokens.requires_grad:
                tokens = checkpoint(self._block, layer, tokens, windowed, use_reentrant=False)
            else:
                tokens = self._block(layer, tokens, windowed)
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
