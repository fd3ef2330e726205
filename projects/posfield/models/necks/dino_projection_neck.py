"""DINO/iBOT projection: MLP -> bottleneck -> L2 norm -> weight-normalised prototypes."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS
from torch.nn.utils.parametrizations import weight_norm

from projects.common.cpu_tuning import linear_module


@MODELS.register_module()
class DINOProjectionNeck(BaseModule):
    """Maps tokens ``(N, C)`` to prototype logits ``(N, K)`` in fp32.

    The last layer is ``self.prototypes`` (all its parameters are named ``prototypes.*``, whose lr the
    algorithm sets to 0 for the first epoch). Its weight-norm magnitude ``g`` starts at 1 and is trained (with
    weight decay), as DINOv2's ``DINOHead``; ``norm_last_layer=True`` fixes it at 1 instead, so logits stay
    cosine similarities (DINO v1's option).
    """

    def __init__(self, in_channels: int, hidden_channels: int = 2048, bottleneck_channels: int = 256,
                 num_prototypes: int = 65536, num_layers: int = 3, norm_last_layer: bool = False,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if num_layers < 1:
            raise ValueError(f'num_layers must be >= 1, got {num_layers}')
        dims = [in_channels] + [hidden_channels] * (num_layers - 1) + [bottleneck_channels]
        layers = []
        for i in range(num_layers):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < num_layers - 1:
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        self.prototypes = weight_norm(nn.Linear(bottleneck_channels, num_prototypes, bias=False))
        self.prototypes.parametrizations.weight.original0.data.fill_(1.0)
        self.prototypes.parametrizations.weight.original0.requires_grad = not norm_last_layer
        self.num_prototypes = num_prototypes

    def init_weights(self):
        super().init_weights()
        for m in self.mlp.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = linear_module(self.mlp, x)
        # Normalisation and the prototype product in fp32: fp16 cosine logits / 0.04 overflow softmax.
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = F.normalize(x.to(torch.promote_types(x.dtype, torch.float32)), dim=-1, eps=1e-6)
            return linear_module(self.prototypes, x)
