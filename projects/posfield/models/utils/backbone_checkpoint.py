"""Loading pre-trained backbone weights with a coverage check (never a silent partial load).

Used by the detector backbone (``det/``), the converter (``tools/model_converters/extract_backbone.py``) and
the analysis tools (``evaluation/``); it imports neither mmdet nor mmpretrain.

Accepted checkpoints (``state_dict`` inside an mmengine checkpoint, or a bare state dict):
* a PosFieldSSL pre-training checkpoint: the EMA teacher ``teacher.module.backbone.*`` (``key='teacher'``, the
  default) or the student ``backbone.*`` (``key='student'``);
* a backbone-only file from ``tools/model_converters/extract_backbone.py`` (keys without prefix);
* an mmpretrain ViT checkpoint (``backbone.*``, ordinary ``pos_embed``) or a timm ViT (``blocks.N.*``).
"""
import os.path as osp
import re
from typing import Dict, Iterable, Optional, Tuple

import torch
from mmengine.logging import print_log

import projects.common  # noqa: F401  (safe globals for mmengine checkpoints under weights_only)

KEYS = ('teacher', 'student')
PREFIXES = {'teacher': 'teacher.module.backbone.', 'student': 'backbone.'}
# Pre-training tokens with no role in a detector (no [CLS], no masking at fine-tuning time).
IGNORED_SOURCE_KEYS = ('cls_token', 'cls_pos', 'mask_token', 'pos_mask_token')

_TIMM = [
    (r'^blocks\.(\d+)\.norm1\.', r'layers.\1.ln1.'),
    (r'^blocks\.(\d+)\.norm2\.', r'layers.\1.ln2.'),
    (r'^blocks\.(\d+)\.attn\.', r'layers.\1.attn.'),
    (r'^blocks\.(\d+)\.mlp\.fc1\.', r'layers.\1.ffn.layers.0.0.'),
    (r'^blocks\.(\d+)\.mlp\.fc2\.', r'layers.\1.ffn.layers.1.'),
    (r'^blocks\.(\d+)\.ls1\.gamma$', r'layers.\1.attn.gamma1.weight'),
    (r'^blocks\.(\d+)\.ls2\.gamma$', r'layers.\1.ffn.gamma2.weight'),
    (r'^patch_embed\.proj\.', 'patch_embed.projection.'),
    (r'^norm\.', 'ln1.'),
]


class CheckpointMismatchError(RuntimeError):
    """The checkpoint does not fit the backbone; the message lists the keys and shapes."""


def read_state_dict(path: str) -> Dict[str, torch.Tensor]:
    if not osp.isfile(path):
        raise FileNotFoundError(f'pre-trained checkpoint not found: {path}')
    ckpt = torch.load(path, map_location='cpu', weights_only=True)
    for field in ('state_dict', 'model'):
        if isinstance(ckpt, dict) and isinstance(ckpt.get(field), dict):
            return ckpt[field]
    if not isinstance(ckpt, dict):
        raise CheckpointMismatchError(f'{path}: expected a state dict, got {type(ckpt).__name__}')
    return ckpt


def select_backbone(state: Dict[str, torch.Tensor], key: str = 'teacher',
                    source: str = '<checkpoint>') -> Tuple[Dict[str, torch.Tensor], str]:
    """Backbone tensors with their prefix removed, and a description of where they came from."""
    if key not in KEYS:
        raise ValueError(f"key (--key) must be one of {KEYS}, got {key!r}")
    has_teacher = any(k.startswith(PREFIXES['teacher']) for k in state)
    if has_teacher:
        prefix = PREFIXES[key]
        picked = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not picked:
            raise CheckpointMismatchError(f'{source}: no {key} backbone ({prefix}*) in this pre-training checkpoint')
        return picked, f'{key} ({prefix}*)'
    if any(k.startswith('backbone.') for k in state):
        if key == 'teacher':
            print_log(f'{source} has no EMA teacher; using its backbone.* weights', logger='current')
        return {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')}, 'backbone.*'
    if any(k.startswith('blocks.') for k in state):
        converted = {}
        for k, v in state.items():
            for pattern, repl in _TIMM:
                k = re.sub(pattern, repl, k)
            converted[k] = v
        return converted, 'timm ViT'
    return dict(state), 'backbone-only'


def load_backbone_weights(backbone: torch.nn.Module, path: str, key: str = 'teacher',
                          allow_missing: Iterable[str] = (), allow_unexpected: Iterable[str] = IGNORED_SOURCE_KEYS,
                          adapt: Optional[callable] = None) -> Dict[str, object]:
    """Load ``path`` into ``backbone`` and check that every parameter is covered.

    ``adapt(name, tensor, target_tensor)`` may convert a tensor whose shape legitimately differs (e.g. a
    ``pos_embed`` for another resolution); it must return a tensor of the target's shape, or None.
    ``allow_missing`` / ``allow_unexpected`` are name prefixes that may be absent from the checkpoint / present
    but unused. Raises :class:`CheckpointMismatchError` naming every other missing, unexpected and mis-shaped
    key. Returns ``dict(loaded, total, missing, source)``.
    """
    source, where = select_backbone(read_state_dict(path), key, path)
    target = backbone.state_dict()
    allow_missing, allow_unexpected = tuple(allow_missing), tuple(allow_unexpected)
    loaded, wrong_shape = {}, []
    for name, tensor in source.items():
        if name not in target:
            continue
        if tensor.shape != target[name].shape and adapt is not None:
            converted = adapt(name, tensor, target[name])
            tensor = converted if converted is not None else tensor
        if tensor.shape != target[name].shape:
            wrong_shape.append(f'  {name}: backbone {tuple(target[name].shape)}, checkpoint {tuple(tensor.shape)}')
            continue
        loaded[name] = tensor
    missing = [k for k in target if k not in source and not k.startswith(allow_missing)]
    missing_allowed = [k for k in target if k not in source and k.startswith(allow_missing)]
    unexpected = [k for k in source if k not in target and not k.startswith(allow_unexpected)]
    if missing or unexpected or wrong_shape:
        parts = [f'{path} ({where}) does not fit {type(backbone).__name__}:']
        if wrong_shape:
            parts += ['shape mismatches (another width, patch size or field size?):'] + wrong_shape
        if missing:
            parts += [f'missing in checkpoint ({len(missing)}): ' + ', '.join(missing[:20])]
            if any(k in ('cls_token', 'cls_pos') for k in missing):
                parts.append('the [CLS] token is missing: backbone files for the detector (extract_backbone.py) '
                             'drop it; pass the pre-training checkpoint instead')
        if unexpected:
            parts += [f'not used by the backbone ({len(unexpected)}): ' + ', '.join(unexpected[:20])]
        raise CheckpointMismatchError('\n'.join(parts))
    result = backbone.load_state_dict(loaded, strict=False)
    assert not result.unexpected_keys
    covered = len(loaded)
    total = len(target)
    print_log(f'loaded {covered}/{total} backbone tensors from {path} [{where}]'
              + (f'; not in checkpoint, left at init: {", ".join(missing_allowed)}' if missing_allowed else ''),
              logger='current')
    return dict(loaded=covered, total=total, missing=missing_allowed, source=f'{path} [{where}]')
