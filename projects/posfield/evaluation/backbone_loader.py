"""Build a pre-trained backbone for analysis from a config and a checkpoint, and run it.

Accepted checkpoints (an mmengine checkpoint's ``state_dict``, or a bare state dict):
* a PosFieldSSL pre-training checkpoint: the EMA teacher ``teacher.module.backbone.*`` (``key='teacher'``,
  the default) or the student ``backbone.*`` (``key='student'``);
* an mmpretrain model with a ``backbone.*`` (classifier, other self-supervised algorithm);
* a backbone-only state dict (keys without prefix, e.g. from ``tools/model_converters/extract_backbone.py``).
The loading and the coverage check are :mod:`projects.common.backbone_loader`'s (one loader for every package).
Every backbone tensor must be covered and every selected tensor used, or :class:`CheckpointMismatchError`
names the keys (a silently partial load would make every analysis meaningless).
"""
import copy
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

import projects.common  # noqa: F401  (mmengine checkpoints load under torch >= 2.6 weights_only)

from projects.analysis.encoding import IMAGENET_MEAN, IMAGENET_STD, encode, normalize_images  # noqa: F401
from projects.common.backbone_loader import CheckpointMismatchError, load_backbone_weights  # noqa: F401

# Pre-training-only tokens no analysis uses: a checkpoint may lack them.
UNUSED_IN_ANALYSIS = ('mask_token', 'pos_mask_token')


@dataclass
class LoadedBackbone:
    """A backbone in eval mode plus what is needed to feed it."""
    backbone: nn.Module
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


def load_backbone_state(backbone: nn.Module, path: str, key: Optional[str] = None,
                        allow_missing: Sequence[str] = UNUSED_IN_ANALYSIS) -> str:
    """Load ``path`` into ``backbone`` with a full coverage check (every selected tensor must be used too);
    returns a description of the source. See :func:`load_backbone_weights`."""
    info = load_backbone_weights(backbone, path, key=key, allow_missing=tuple(allow_missing), allow_unexpected=())
    note = f'; not in checkpoint, left at init: {", ".join(info["missing"])}' if info['missing'] else ''
    return info['source'] + note


def _import_custom(cfg) -> None:
    imports = cfg.get('custom_imports')
    if imports:
        from mmengine.utils import import_modules_from_strings
        import_modules_from_strings(**imports)


def load_backbone(config, checkpoint: Optional[str], key: Optional[str] = None,
                  device: Union[str, torch.device] = 'cpu',
                  cfg_options: Optional[dict] = None,
                  allow_missing: Sequence[str] = UNUSED_IN_ANALYSIS) -> LoadedBackbone:
    """Build ``config``'s backbone (``model.backbone``, mmpretrain ``MODELS``) and load ``checkpoint``.

    Args:
        config: a config path or an mmengine ``Config``; its ``custom_imports`` are imported first.
        checkpoint: a checkpoint path (see module docstring); None keeps the freshly initialised weights.
        key: ``'teacher'`` (EMA teacher) or ``'student'``; None (default): the teacher when there is one.
        allow_missing: backbone tensors the checkpoint may lack (see :func:`load_backbone_state`).
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
    _import_custom(cfg)
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
        source = load_backbone_state(backbone, checkpoint, key, allow_missing)
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


def _find_transform(node, type_name: str):
    if isinstance(node, dict):
        if str(node.get('type', '')).split('.')[-1] == type_name:
            return node
        node = list(node.values())
    if isinstance(node, (list, tuple)):
        for value in node:
            found = _find_transform(value, type_name)
            if found is not None:
                return found
    return None


def canvas_box_for(cfg, placement: str = 'whole') -> Optional[Tuple[float, float, float, float]]:
    """Canvas window of an un-cropped image: ``'whole'`` (None: the whole canvas, as the detector places its
    input) or ``'mean'`` (the mean pre-training placement of the config: ``train_dataloader.collate_fn.placement``
    or the ``PosFieldMultiCrop`` transform's, Beta(2, 5) when the config states none)."""
    if placement == 'whole':
        return None
    if placement != 'mean':
        raise ValueError(f"placement must be 'whole' or 'mean', got {placement!r}")
    from projects.posfield.models.utils.pos_field import DEFAULT_PLACEMENT, mean_placement
    loader = (cfg.get('train_dataloader') or {}) if cfg is not None else {}
    pre = loader.get('collate_fn') or {}
    crop = _find_transform(loader or None, 'PosFieldMultiCrop')
    place_cfg = dict(pre.get('placement') or (crop or {}).get('placement') or DEFAULT_PLACEMENT)
    p = mean_placement(**place_cfg)
    return (p.ox, p.oy, p.ox + p.s, p.oy + p.s)
