"""The one table of ViT sizes, shared by the pre-training backbone and the detection backbone.

Names follow the papers (ViT-S/16 = ``'ViT-S'`` with ``patch_size=16``). mmpretrain's own arch names are
NOT used: its ``'small'`` is a 768-d, 8-layer model (timm's first "ViT-small"), not ViT-S/16, so a config
naming it would build a 768-d backbone behind a 384-d neck. The patch size is a separate argument of both
backbones.

This module is pure Python so the mmdet side can import it without mmpretrain's models.
"""
from typing import Dict, Union

ARCH_KEYS = ('embed_dims', 'num_layers', 'num_heads', 'feedforward_channels')

VIT_ARCHS: Dict[str, Dict[str, int]] = {
    'ViT-S': dict(embed_dims=384, num_layers=12, num_heads=6, feedforward_channels=1536),  # ablations
    'ViT-B': dict(embed_dims=768, num_layers=12, num_heads=12, feedforward_channels=3072),  # main setting
    'ViT-L': dict(embed_dims=1024, num_layers=24, num_heads=16, feedforward_channels=4096),
    # Small CPU sizes (not in the papers): the default job, and the smoke tests.
    'ViT-mini': dict(embed_dims=192, num_layers=6, num_heads=3, feedforward_channels=768),
    'ViT-micro': dict(embed_dims=64, num_layers=2, num_heads=2, feedforward_channels=128),
}

# mmpretrain names that mean something else; named in the error so the trap is explained where it bites.
_MISLEADING = {'small': 'ViT-S', 'deit-small': 'ViT-S', 'base': 'ViT-B', 'b': 'ViT-B', 's': 'ViT-S',
               'large': 'ViT-L', 'l': 'ViT-L'}


def vit_arch(arch: Union[str, dict]) -> Dict[str, int]:
    """The four size settings of ``arch``: a name of :data:`VIT_ARCHS` or a dict with :data:`ARCH_KEYS`."""
    if isinstance(arch, str):
        if arch in VIT_ARCHS:
            return dict(VIT_ARCHS[arch])
        hint = ''
        if arch.lower() in _MISLEADING:
            hint = (f" (mmpretrain's {arch!r} is not the paper's model; "
                    f"use arch={_MISLEADING[arch.lower()]!r})")
        raise ValueError(f'unknown ViT arch {arch!r}{hint}; expected one of {sorted(VIT_ARCHS)} or a dict '
                         f'with keys {ARCH_KEYS}')
    if isinstance(arch, dict):
        arch = dict(arch)
        missing = [k for k in ARCH_KEYS if k not in arch]
        extra = sorted(set(arch) - set(ARCH_KEYS))
        if missing or extra:
            raise ValueError(f'a ViT arch dict needs exactly the keys {ARCH_KEYS}; missing {missing}, '
                             f'unexpected {extra}')
        return {k: int(arch[k]) for k in ARCH_KEYS}
    raise TypeError(f'arch must be a name of {sorted(VIT_ARCHS)} or a dict, got {type(arch).__name__}')
