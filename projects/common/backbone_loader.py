"""Loading pre-trained backbone weights with a coverage check (never a silent partial load).

One loader for every package: the position-field detector backbone (:mod:`projects.posfield.det`), the
classify-and-localise model (:mod:`projects.simclr_loc`), the analysis tools and the HTML report
(:func:`load_backbone` builds a config's backbone and loads a checkpoint into it), the converter
``tools/model_converters/extract_backbone.py`` and ``tools/test.py``. mmengine's ``Pretrained`` init and
``load_from`` load non-strictly and only log what they skipped, so a checkpoint of another width or another
model would leave most of the network random; here every missing, unexpected and mis-shaped key is named.
It imports neither mmdet nor mmpretrain at import time (:func:`load_backbone` uses mmpretrain's ``MODELS``).

Accepted checkpoints (``state_dict`` / ``model`` inside an mmengine checkpoint, or a bare state dict; a DDP
``module.`` prefix is removed):

* a PosFieldSSL pre-training checkpoint: the EMA teacher ``teacher.module.backbone.*`` (``key='teacher'``, the
  default when there is one) or the student ``backbone.*`` (``key='student'``);
* any mmpretrain model with a ``backbone.*`` (SimCLR, a classifier, another self-supervised algorithm);
* a backbone-only file, e.g. from ``tools/model_converters/extract_backbone.py`` (keys without prefix);
* a timm ViT (``blocks.N.*``), renamed to mmpretrain's layout.
"""
from __future__ import annotations

import copy
import os.path as osp
import re
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.logging import print_log

from .checkpoint import atomic_write_bytes, load_checkpoint_file
from .errors import BadInputError

KEYS = ('teacher', 'student')
PREFIXES = {'teacher': 'teacher.module.backbone.', 'student': 'backbone.'}
# Pre-training tokens with no role in a detector (no [CLS], no masking at fine-tuning time).
IGNORED_SOURCE_KEYS = ('cls_token', 'cls_pos', 'mask_token', 'pos_mask_token')
# Pre-training-only tokens no analysis uses: a checkpoint may lack them.
UNUSED_IN_ANALYSIS = ('mask_token', 'pos_mask_token')
# Image normalisation when a config's data_preprocessor states none (mmpretrain's ImageNet values, 0-255 RGB).
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
# What every ViT backbone of this repository (and mmpretrain's VisionTransformer) has.
VIT_MARKERS = ('patch_embed.projection.weight', 'layers.0.attn.qkv.weight')

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


class CheckpointMismatchError(BadInputError, RuntimeError):
    """The checkpoint does not fit the model; the message lists the keys and shapes."""


class NoTensorsUnderPrefixError(BadInputError, KeyError):
    """An explicitly requested prefix selects nothing."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ''


def read_state_dict(path: str, what: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """The state dict of a checkpoint file (safely loaded: see :func:`load_checkpoint_file`)."""
    try:
        ckpt = load_checkpoint_file(path)
    except FileNotFoundError:
        raise FileNotFoundError(f'{what}={path!r}: checkpoint file not found' if what
                                else f'pre-trained checkpoint not found: {path}') from None
    if isinstance(ckpt, dict):
        for field in ('state_dict', 'model', 'module'):
            if isinstance(ckpt.get(field), dict):
                ckpt = ckpt[field]
                break
    if not isinstance(ckpt, dict):
        raise CheckpointMismatchError(f'{path}: expected a state dict, got {type(ckpt).__name__}')
    state = {k: v for k, v in ckpt.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise CheckpointMismatchError(f'{path}: holds no tensors (keys: {", ".join(map(str, list(ckpt)[:10]))})')
    if all(k.startswith('module.') for k in state):  # saved from a DDP-wrapped model
        state = {k[len('module.'):]: v for k, v in state.items()}
    return state


def has_networks(state: Dict[str, torch.Tensor]) -> bool:
    """True for a teacher-student pre-training checkpoint (something ``key`` can choose in)."""
    return any(k.startswith(PREFIXES['teacher']) for k in state)


def select_backbone(state: Dict[str, torch.Tensor], key: Optional[str] = None,
                    source: str = '<checkpoint>') -> Tuple[Dict[str, torch.Tensor], str]:
    """Backbone tensors with their prefix removed, and a description of where they came from.

    ``key=None`` (or ``'teacher'``) takes the EMA teacher when the checkpoint has one, else its only backbone;
    ``key='student'`` on a file without teacher and student is logged as a warning (it cannot choose anything).
    """
    if key is not None and key not in KEYS:
        raise ValueError(f"key (--key) must be one of {KEYS}, got {key!r}")
    if has_networks(state):
        prefix = PREFIXES[key or 'teacher']
        picked = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not picked:
            raise CheckpointMismatchError(f'{source}: no {key} backbone ({prefix}*) in this pre-training checkpoint')
        return picked, f'{key or "teacher"} ({prefix}*)'
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
        picked, where = converted, 'timm ViT'
    else:
        picked, where = dict(state), 'backbone-only'
    if key == 'student':  # 'teacher' is also the default meaning ("the EMA network when there is one")
        print_log(f'{source} is a {where} file with no teacher/student networks; key={key!r} has nothing to '
                  'choose and is ignored', logger='current', level=30)
    return picked, where


def describe_state(state: Dict[str, torch.Tensor], limit: int = 5) -> str:
    """``'358 tensors, e.g. a, b, c'`` plus a guess at what kind of network they are."""
    names = list(state)
    text = f'{len(names)} tensors, e.g. {", ".join(names[:limit])}'
    if any(re.search(r'(^|\.)(conv|bn|depthwise_conv|se)\b', k) for k in names) and not any(
            k.startswith('patch_embed.') for k in names):
        text += ' (a convolutional network such as an EfficientNet or a ResNet)'
    return text


def check_vit_backbone(state: Dict[str, torch.Tensor], source: str, where: str) -> None:
    """Raise unless ``state`` (a selected backbone) looks like a ViT backbone (see ``VIT_MARKERS``)."""
    lacking = [k for k in VIT_MARKERS if k not in state]
    if lacking:
        raise CheckpointMismatchError(
            f'{source}: the selected tensors ({where}: {describe_state(state)}) are not a ViT backbone: no '
            f'{", ".join(lacking)}. Expected a position-field pre-training checkpoint (teacher.module.backbone.*), '
            'an mmpretrain ViT (backbone.*), a timm ViT (blocks.N.*) or a ViT backbone-only file.')


def compare_state_dicts(target: Dict[str, torch.Tensor], source: Dict[str, torch.Tensor],
                        allow_missing: Tuple[str, ...] = (), allow_unexpected: Tuple[str, ...] = (),
                        adapt: Optional[Callable] = None):
    """Match ``source`` against ``target`` by name and shape.

    Returns ``(loaded, missing, missing_allowed, unexpected, wrong_shape)``: the tensors to load, the target keys
    absent from the source (not / only allowed by prefix), source keys the target lacks (not allowed) and
    ``'  name: backbone (shape), checkpoint (shape)'`` lines.
    """
    loaded, wrong_shape = {}, []
    for name, tensor in source.items():
        if name not in target:
            continue
        if tuple(tensor.shape) != tuple(target[name].shape) and adapt is not None:
            converted = adapt(name, tensor, target[name])
            tensor = converted if converted is not None else tensor
        if tuple(tensor.shape) != tuple(target[name].shape):
            wrong_shape.append(f'  {name}: backbone {tuple(target[name].shape)}, checkpoint {tuple(tensor.shape)}')
            continue
        loaded[name] = tensor
    missing = [k for k in target if k not in source and not k.startswith(allow_missing)]
    missing_allowed = [k for k in target if k not in source and allow_missing and k.startswith(allow_missing)]
    unexpected = [k for k in source if k not in target and not (allow_unexpected and k.startswith(allow_unexpected))]
    return loaded, missing, missing_allowed, unexpected, wrong_shape


def mismatch_message(header: str, missing: List[str], unexpected: List[str], wrong_shape: List[str],
                     limit: int = 20) -> str:
    parts = [header]
    if wrong_shape:
        parts += [f'shape mismatches ({len(wrong_shape)}; another width, patch size or field size?):'] \
            + wrong_shape[:limit] + (['  ...'] if len(wrong_shape) > limit else [])
    if missing:
        parts.append(f'missing in checkpoint: {len(missing)} backbone tensors missing: ' + ', '.join(missing[:limit])
                     + (', ...' if len(missing) > limit else ''))
        if any(k in ('cls_token', 'cls_pos') for k in missing):
            parts.append('the [CLS] token is missing: backbone files written by extract_backbone.py before it kept '
                         'the [CLS] token lack it; extract the backbone again or pass the pre-training checkpoint')
    if unexpected:
        parts.append(f'not used by the backbone ({len(unexpected)}): ' + ', '.join(unexpected[:limit])
                     + (', ...' if len(unexpected) > limit else ''))
    return '\n'.join(parts)


def load_backbone_weights(backbone: torch.nn.Module, path: str, key: Optional[str] = None,
                          allow_missing: Iterable[str] = (), allow_unexpected: Iterable[str] = IGNORED_SOURCE_KEYS,
                          adapt: Optional[Callable] = None, prefix: Optional[str] = None,
                          what: Optional[str] = None) -> Dict[str, object]:
    """Load ``path`` into ``backbone`` and check that every parameter is covered.

    Args:
        key: ``'teacher'`` / ``'student'`` of a pre-training checkpoint; None: the teacher if there is one.
        allow_missing / allow_unexpected: name prefixes that may be absent from the checkpoint / present but
            unused (default: the pre-training-only tokens).
        adapt: ``adapt(name, tensor, target_tensor)`` may convert a tensor whose shape legitimately differs
            (e.g. a ``pos_embed`` for another resolution); it returns a tensor of the target's shape, or None.
        prefix: take exactly the tensors under this prefix instead of the automatic selection (``key``).
        what: the config key that named ``path``, for the messages.

    Raises :class:`CheckpointMismatchError` naming every other missing, unexpected and mis-shaped key.
    Returns ``dict(loaded, total, missing, source)``.
    """
    state = read_state_dict(path, what)
    if prefix is not None:
        source = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not source:
            raise NoTensorsUnderPrefixError(f'{path}: no tensor whose name starts with {prefix!r} (first keys: '
                                            f'{", ".join(list(state)[:5])}); set the prefix to the backbone '
                                            'prefix used in this checkpoint')
        where = f'{prefix}*'
    else:
        source, where = select_backbone(state, key, path)
    target = backbone.state_dict()
    loaded, missing, missing_allowed, unexpected, wrong_shape = compare_state_dicts(
        target, source, tuple(allow_missing), tuple(allow_unexpected), adapt)
    if missing or unexpected or wrong_shape:
        raise CheckpointMismatchError(mismatch_message(
            f'{path} ({where}) does not fit {type(backbone).__name__} ({len(target)} tensors). Was it trained '
            'with the same backbone type and arch?', missing, unexpected, wrong_shape))
    result = backbone.load_state_dict(loaded, strict=False)
    assert not result.unexpected_keys
    print_log(f'backbone {type(backbone).__name__} initialised: loaded {len(loaded)}/{len(target)} tensors from '
              f'{path} [{where}]'
              + (f'; not in checkpoint, left at init: {", ".join(missing_allowed)}' if missing_allowed else ''),
              logger='current')
    return dict(loaded=len(loaded), total=len(target), missing=missing_allowed, source=f'{path} [{where}]')


class NonFiniteCheckpointError(BadInputError, ValueError):
    """A checkpoint whose weights hold NaN or Inf; the message names the file and the first such tensors."""


def non_finite_tensors(state: Dict[str, torch.Tensor]) -> List[str]:
    """``'name (K NaN, L Inf of N values)'`` for every floating tensor of ``state`` with a non-finite value, in
    the state dict's order."""
    found = []
    for name, tensor in state.items():
        if not (tensor.is_floating_point() or tensor.is_complex()) or bool(torch.isfinite(tensor).all()):
            continue
        nan = int(torch.isnan(tensor).sum())
        inf = int(torch.isinf(tensor).sum())
        found.append(f'{name} ({nan} NaN, {inf} Inf of {tensor.numel()} values)')
    return found


def check_checkpoint_fits_model(model: torch.nn.Module, path: str) -> Dict[str, torch.Tensor]:
    """Raise :class:`CheckpointMismatchError` unless ``path``'s state dict covers ``model`` exactly (names and
    shapes), and :class:`NonFiniteCheckpointError` if a weight holds NaN or Inf; used by ``tools/test.py`` so that
    metrics never come from a partly random or a diverged model (mmdet evaluates the latter to an empty result
    and "metrics": {})."""
    state = read_state_dict(path)
    target = model.state_dict()
    _, missing, _, unexpected, wrong_shape = compare_state_dicts(target, state)
    if missing or unexpected or wrong_shape:
        hint = ''
        if has_networks(state):
            hint = (' It is a pre-training checkpoint: train a detector from it (extract_backbone.py, then '
                    'model.backbone.init_cfg) and test that.')
        raise CheckpointMismatchError(mismatch_message(
            f'{path} does not fit the model {type(model).__name__} of the config ({len(target)} tensors; the '
            f'checkpoint has {len(state)}).{hint}', missing, unexpected, wrong_shape).replace(
                'backbone tensors missing', 'tensors missing').replace('not used by the backbone', 'not in the model'))
    bad = non_finite_tensors(state)
    if bad:
        limit = 5
        raise NonFiniteCheckpointError(
            f'{path}: {len(bad)} of {len(state)} tensors hold non-finite values (NaN or Inf), so the model cannot '
            'give usable predictions (did the training run diverge? use an earlier checkpoint). First: '
            + '; '.join(bad[:limit]) + ('; ...' if len(bad) > limit else ''))
    return state


@dataclass
class LoadedBackbone:
    """A backbone in eval mode plus what is needed to feed it."""
    backbone: torch.nn.Module
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD
    img_size: int = 224
    patch_size: int = 16
    source: str = ''
    info: Dict[str, object] = field(default_factory=dict)
    cfg: object = None

    @property
    def num_prefix_tokens(self) -> int:
        return int(getattr(self.backbone, 'num_extra_tokens', 1))


def load_backbone(config, checkpoint: Optional[str], key: Optional[str] = None,
                  device: Union[str, torch.device] = 'cpu',
                  cfg_options: Optional[dict] = None,
                  allow_missing: Sequence[str] = UNUSED_IN_ANALYSIS) -> LoadedBackbone:
    """Build ``config``'s backbone (``model.backbone``, mmpretrain ``MODELS``) and load ``checkpoint`` (for analysis).

    Args:
        config: a config path or an mmengine ``Config``; its ``custom_imports`` are imported first.
        checkpoint: a checkpoint path (see module docstring); None keeps the freshly initialised weights.
        key: ``'teacher'`` (EMA teacher) or ``'student'``; None (default): the teacher when there is one.
        allow_missing: backbone tensors the checkpoint may lack; every selected tensor must be used.
    """
    from mmengine.config import Config
    from mmpretrain.registry import MODELS
    if isinstance(config, str):
        if not osp.isfile(config):
            raise FileNotFoundError(f'config file not found: {config}')
        cfg = Config.fromfile(config)
        name = config
    else:
        cfg, name = config, getattr(config, 'filename', '<config>')
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    imports = cfg.get('custom_imports')
    if imports:
        from mmengine.utils import import_modules_from_strings
        import_modules_from_strings(**imports)
    model_cfg = cfg.get('model')
    if model_cfg is None:
        raise KeyError(f'{name}: the config has no `model`')
    bb_cfg = model_cfg.get('backbone', model_cfg) if isinstance(model_cfg, dict) else None
    if not isinstance(bb_cfg, dict) or 'type' not in bb_cfg:
        raise KeyError(f'{name}: expected `model.backbone` to be a dict with a `type`')
    bb_cfg = copy.deepcopy(dict(bb_cfg))
    bb_cfg.pop('init_cfg', None)  # weights come from `checkpoint`; never fetch anything at build time
    if 'drop_path_rate' in bb_cfg:
        bb_cfg['drop_path_rate'] = 0.0
    try:
        backbone = MODELS.build(bb_cfg)
    except KeyError as exc:
        raise KeyError(f'{name}: cannot build model.backbone type={bb_cfg["type"]!r} from mmpretrain\'s MODELS '
                       f'({exc}). The analysis tools take a pre-training (mmpretrain) config, e.g. '
                       f'configs/posfield/*.py, not a detection config.') from exc
    if checkpoint is not None:
        loaded = load_backbone_weights(backbone, checkpoint, key=key, allow_missing=tuple(allow_missing),
                                       allow_unexpected=())
        source = loaded['source'] + (f'; not in checkpoint, left at init: {", ".join(loaded["missing"])}'
                                     if loaded['missing'] else '')
    else:
        backbone.init_weights()
        source = 'random initialisation (no checkpoint)'
    backbone.to(device)
    backbone.eval()  # separate calls: mmpretrain's BaseBackbone.train() returns None
    backbone.requires_grad_(False)
    pre = model_cfg.get('data_preprocessor') or {}
    kernel = backbone.patch_embed.projection.kernel_size
    patch = int(kernel[0] if isinstance(kernel, (tuple, list)) else kernel)
    res = getattr(backbone, 'patch_resolution', (224 // patch, 224 // patch))
    return LoadedBackbone(backbone=backbone, mean=tuple(pre.get('mean', IMAGENET_MEAN)),
                          std=tuple(pre.get('std', IMAGENET_STD)), img_size=int(res[0]) * patch,
                          patch_size=patch, source=source,
                          info=dict(config=name, checkpoint=checkpoint, key=key, type=bb_cfg['type']), cfg=cfg)


def extract_backbone(src: str, dst: str, key: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """Write the backbone of the checkpoint ``src`` (the ``key`` network of a teacher-student checkpoint, the
    teacher by default; see :func:`select_backbone`) to ``dst`` as a backbone-only file (atomically), after the
    ViT check; returns the backbone's tensors. ``tools/model_converters/extract_backbone.py``."""
    import hashlib
    import io
    state = read_state_dict(src)
    if key is not None and not has_networks(state):
        raise CheckpointMismatchError(
            f'--key {key}: {src} has no teacher/student networks (no teacher.module.backbone.* keys); it is a '
            'single-network or backbone-only file. Leave out --key.')
    kept, where = select_backbone(state, key, src)
    check_vit_backbone(kept, src, where)
    buf = io.BytesIO()
    torch.save(dict(state_dict=kept, meta=dict(source=osp.abspath(src), selected=where, key=key or 'teacher')), buf)
    atomic_write_bytes(buf.getvalue(), dst)
    digest = hashlib.sha256(buf.getvalue()).hexdigest()[:8]
    print(f'{dst}: {len(kept)} backbone tensors from {where} '
          f'({sum(v.numel() for v in kept.values()) / 1e6:.2f} M parameters); sha256 {digest}')
    return kept
