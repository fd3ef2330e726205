"""ViTDet's simple feature pyramid from a single stride-16 map, and the LayerNorm2d its heads use."""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from mmengine.registry import DefaultScope


@MODELS.register_module()
class LN2d(nn.Module):
    """LayerNorm over the channels of an NCHW map (``norm_cfg=dict(type='LN2d')`` in mmcv conv modules)."""
    _abbr_ = 'ln'

    def __init__(self, num_features: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


@MODELS.register_module()
class SimpleFPN(BaseModule):
    """Strides 4, 8, 16, 32 (deconvolutions, identity, max-pool) from the stride-16 ViT map, each followed by a
    1x1 and a 3x3 conv with LN2d, plus a stride-64 level by max-pooling the last (``num_outs=5``).

    As in ViTDet's simple feature pyramid (Li et al., 2022; detectron2 ``SimpleFeaturePyramid``), each conv is
    followed by its norm only, with no activation: the outputs keep their negative values. The four levels'
    widths follow from ``backbone_channel`` (``in_channels`` may be left out).
    """

    def __init__(self, backbone_channel: int, in_channels: Optional[Sequence[int]] = None, out_channels: int = 256,
                 num_outs: int = 5, norm_cfg: dict = dict(type='LN2d', requires_grad=True), init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        c = backbone_channel
        derived = [c // 4, c // 2, c, c]  # deconvolutions halve the width twice; identity and max-pool keep it
        if in_channels is not None and list(in_channels) != derived:
            raise ValueError(f'SimpleFPN in_channels must be {derived} for backbone_channel={c} (or left out), '
                             f'got {list(in_channels)}')
        self.backbone_channel = c
        self.fpn1 = nn.Sequential(nn.ConvTranspose2d(c, c // 2, 2, 2), LN2d(c // 2), nn.GELU(),
                                  nn.ConvTranspose2d(c // 2, c // 4, 2, 2))
        self.fpn2 = nn.Sequential(nn.ConvTranspose2d(c, c // 2, 2, 2))
        self.fpn3 = nn.Identity()
        self.fpn4 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.num_outs = num_outs
        # ConvModule looks its norm up in the default scope's registry; LN2d lives in mmdet's, so build there
        # whatever scope the caller left (a bare SimpleFPN, a test run alone)
        with DefaultScope.overwrite_default_scope('mmdet'):
            self.lateral_convs = nn.ModuleList(
                ConvModule(ch, out_channels, 1, norm_cfg=norm_cfg, act_cfg=None) for ch in derived)
            self.fpn_convs = nn.ModuleList(
                ConvModule(out_channels, out_channels, 3, padding=1, norm_cfg=norm_cfg, act_cfg=None)
                for _ in derived)

    def forward(self, inputs: Tuple[torch.Tensor]) -> Tuple[torch.Tensor, ...]:
        x = inputs[0]
        if x.shape[1] != self.backbone_channel:
            raise ValueError(f'SimpleFPN(backbone_channel={self.backbone_channel}) got a {x.shape[1]}-channel map: '
                             f"set the neck's backbone_channel to the backbone arch's embed_dims")
        feats = [self.fpn1(x), self.fpn2(x), self.fpn3(x), self.fpn4(x)]
        outs: List[torch.Tensor] = [conv(lat(f)) for f, lat, conv in zip(feats, self.lateral_convs, self.fpn_convs)]
        while len(outs) < self.num_outs:
            outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        return tuple(outs)
