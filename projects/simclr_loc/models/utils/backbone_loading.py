"""Initialise a backbone from the ``backbone.*`` tensors of a checkpoint, refusing partial matches.

mmengine's ``Pretrained`` init loads non-strictly and only logs what it skipped, so a SimCLR checkpoint of
another EfficientNet size would silently leave most of the backbone random. Here every backbone tensor
must come from the checkpoint with the right shape, and nothing under the prefix may be left over.
"""
from __future__ import annotations

import os.path as osp
from typing import Dict

import torch
from mmengine.logging import print_log


class BackboneCheckpointMismatch(RuntimeError):
    """The checkpoint's backbone tensors do not cover the model's backbone exactly."""


def _state_dict(ckpt) -> Dict[str, torch.Tensor]:
    if isinstance(ckpt, dict):
        for key in ('state_dict', 'model', 'module'):
            if isinstance(ckpt.get(key), dict):
                return ckpt[key]
    if not isinstance(ckpt, dict):
        raise TypeError(f'expected a checkpoint dict, got {type(ckpt).__name__}')
    return ckpt


def load_backbone_weights(backbone: torch.nn.Module, checkpoint: str, prefix: str = 'backbone.',
                          what: str = 'init_checkpoint') -> int:
    """Copy ``prefix``-ed tensors of ``checkpoint`` into ``backbone``; returns how many were loaded.

    Raises:
        FileNotFoundError: no checkpoint file (``what`` names the config key).
        KeyError: no tensor under ``prefix``.
        BackboneCheckpointMismatch: missing, unexpected or mis-shaped backbone tensors.
    """
    if not checkpoint or not osp.isfile(str(checkpoint)):
        raise FileNotFoundError(f'{what}={checkpoint!r}: checkpoint file not found')
    from mmengine.runner.checkpoint import _load_checkpoint
    state = _state_dict(_load_checkpoint(checkpoint, map_location='cpu'))
    if state and all(k.startswith('module.') for k in state):  # saved from a DDP-wrapped model
        state = {k[len('module.'):]: v for k, v in state.items()}
    sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not sub:
        sample = ', '.join(list(state)[:5])
        raise KeyError(f'{checkpoint}: no tensor whose name starts with {prefix!r} (first keys: {sample}); '
                       'set model.init_prefix to the backbone prefix used in this checkpoint')
    own = backbone.state_dict()
    missing = sorted(set(own) - set(sub))
    unexpected = sorted(set(sub) - set(own))
    wrong = sorted(k for k in set(own) & set(sub) if tuple(own[k].shape) != tuple(sub[k].shape))
    if missing or unexpected or wrong:
        details = []
        if missing:
            details.append(f'{len(missing)} backbone tensors missing from the checkpoint (e.g. {missing[:3]})')
        if unexpected:
            details.append(f'{len(unexpected)} checkpoint tensors under {prefix!r} unknown to the model '
                           f'(e.g. {unexpected[:3]})')
        if wrong:
            k = wrong[0]
            details.append(f'{len(wrong)} shape mismatches (e.g. {k}: checkpoint {tuple(sub[k].shape)} vs model '
                           f'{tuple(own[k].shape)})')
        raise BackboneCheckpointMismatch(
            f'{checkpoint}: does not match model.backbone ({type(backbone).__name__}, {len(own)} tensors): '
            + '; '.join(details) + '. Was it trained with the same backbone type and arch?')
    backbone.load_state_dict(sub, strict=True)
    print_log(f'backbone initialised from {checkpoint}: loaded {len(sub)}/{len(own)} tensors '
              f'(prefix {prefix!r})', logger='current')
    return len(sub)
