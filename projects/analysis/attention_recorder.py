"""Read attention weights out of mmpretrain ViT blocks without changing any library class.

mmpretrain's ``MultiheadAttention`` calls ``scaled_dot_product_attention``, which never materialises the
weights. :class:`AttentionRecorder` registers a forward *pre*-hook on ``layers[i].attn`` of the chosen
blocks; the hook sees the block's normalised input ``ln1(x)`` and recomputes
``softmax(q k^T / sqrt(head_dims))`` from the module's own ``qkv`` projection (the same scale mmpretrain
uses). The hooks are removed when the context exits, so nothing outside the ``with`` block is affected.
"""
from typing import Dict, Iterable, Optional

import torch
import torch.nn as nn


def attention_weights(attn_module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``(B, heads, T, T)`` fp32 softmax attention of an mmpretrain ``MultiheadAttention`` on input ``x``."""
    for name in ('qkv', 'num_heads', 'head_dims'):
        if not hasattr(attn_module, name):
            raise TypeError(f'{type(attn_module).__name__} has no {name!r}: expected an mmpretrain '
                            'MultiheadAttention (layers.N.attn with a fused qkv projection)')
    b, t, _ = x.shape
    heads, dims = attn_module.num_heads, attn_module.head_dims
    qkv = attn_module.qkv(x).reshape(b, t, 3, heads, dims).permute(2, 0, 3, 1, 4).float()
    q, k = qkv[0], qkv[1]
    return torch.softmax((q @ k.transpose(-2, -1)) * dims ** -0.5, dim=-1)


def num_layers(backbone: nn.Module) -> int:
    layers = getattr(backbone, 'layers', None)
    if layers is None:
        raise TypeError(f'{type(backbone).__name__} has no `layers`: expected an mmpretrain VisionTransformer')
    return len(layers)


class AttentionRecorder:
    """Context manager that records the attention weights of chosen blocks during forward passes.

    Args:
        backbone: an mmpretrain ``VisionTransformer`` (e.g. ``PosFieldViT``).
        layers: block indices (negative counts from the end); None means every block.

    ``recorder.attn[i]`` holds the last forward's ``(B, heads, T, T)`` weights of block ``i`` (CPU unless
    ``keep_device``). Call :meth:`clear` between batches if you keep the recorder open.
    """

    def __init__(self, backbone: nn.Module, layers: Optional[Iterable[int]] = None, keep_device: bool = False):
        n = num_layers(backbone)
        idx = range(n) if layers is None else list(layers)
        self.layers = []
        for i in idx:
            j = i + n if i < 0 else i
            if not 0 <= j < n:
                raise IndexError(f'layer {i} out of range: the backbone has {n} blocks (0..{n - 1})')
            self.layers.append(j)
        self.backbone = backbone
        self.keep_device = keep_device
        self.attn: Dict[int, torch.Tensor] = {}
        self._handles = []

    def _hook(self, index: int):
        def pre_hook(module, args):
            with torch.no_grad():
                w = attention_weights(module, args[0])
            self.attn[index] = w if self.keep_device else w.cpu()
        return pre_hook

    def clear(self) -> None:
        self.attn = {}

    def __enter__(self):
        for i in self.layers:
            self._handles.append(self.backbone.layers[i].attn.register_forward_pre_hook(self._hook(i)))
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles = []
        return False
