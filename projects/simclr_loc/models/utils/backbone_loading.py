"""Initialise a backbone from the ``backbone.*`` tensors of a checkpoint, refusing partial matches.

The loading and the coverage check are :mod:`projects.common.backbone_loader`'s (one loader for every
package); this keeps the classify-and-localise call: a fixed prefix, nothing left over, a count returned.
"""
from __future__ import annotations

import torch

from projects.common.backbone_loader import BackboneCheckpointMismatch
from projects.common.backbone_loader import load_backbone_weights as _load

__all__ = ['BackboneCheckpointMismatch', 'load_backbone_weights']


def load_backbone_weights(backbone: torch.nn.Module, checkpoint: str, prefix: str = 'backbone.',
                          what: str = 'init_checkpoint') -> int:
    """Copy ``prefix``-ed tensors of ``checkpoint`` into ``backbone``; returns how many were loaded.

    Raises:
        FileNotFoundError: no checkpoint file (``what`` names the config key).
        KeyError: no tensor under ``prefix``.
        BackboneCheckpointMismatch: missing, unexpected or mis-shaped backbone tensors.
    """
    if not checkpoint:
        raise FileNotFoundError(f'{what}={checkpoint!r}: checkpoint file not found')
    return int(_load(backbone, str(checkpoint), prefix=prefix, allow_unexpected=(), what=what)['loaded'])
