"""Stop training at the first non-finite loss, naming the loss term and the iteration.

Without it a NaN/Inf loss trains on: the weights become NaN, every later checkpoint is useless and the run
ends "successfully". The hook runs right after each training step, before :class:`CheckpointHook` (it has a
higher priority), so the checkpoint of the failing iteration is never written and the last one on disk is
the last good one. Registered in mmengine's root ``HOOKS``, so mmpretrain and mmdet configs both find it.
"""
from __future__ import annotations

import math
import os.path as osp
from typing import Dict, Optional

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from .errors import BadInputError


class NonFiniteLossError(BadInputError, FloatingPointError):
    """A loss term became NaN or infinite; the message names the term, the iteration and the last checkpoint."""


def _as_float(value) -> Optional[float]:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            return None
        return float(value.detach().float().item())
    if isinstance(value, (int, float)):
        return float(value)
    return None


def _last_checkpoint(work_dir: Optional[str]) -> Optional[str]:
    """The checkpoint mmengine's CheckpointHook recorded in ``work_dir/last_checkpoint``."""
    record = osp.join(work_dir or '', 'last_checkpoint')
    if work_dir and osp.isfile(record):
        with open(record) as f:
            path = f.read().strip()
        if path and osp.isfile(path):
            return path
    return None


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Raise :class:`NonFiniteLossError` when a logged loss of a training step is NaN or infinite.

    Args:
        keys: substring a log variable's name must contain to be checked (default ``'loss'``: every term and
            the total mmengine sums from them).
    """

    priority = 'VERY_HIGH'  # before CheckpointHook (VERY_LOW) and LoggerHook (BELOW_NORMAL)

    def __init__(self, keys: str = 'loss'):
        self.keys = keys

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs: Optional[Dict] = None) -> None:
        if not isinstance(outputs, dict):
            return
        values = {name: _as_float(v) for name, v in outputs.items() if self.keys in name}
        # the terms first, then mmengine's total 'loss' (their sum, non-finite whenever one of them is)
        bad = {name: v for name, v in sorted(values.items(), key=lambda kv: kv[0] == 'loss')
               if v is not None and not math.isfinite(v)}
        if not bad:
            return
        iteration = runner.iter + 1  # as the log counts: "Iter(train) [N/...]"
        finite = {name: v for name, v in values.items() if v is not None and math.isfinite(v)}
        terms = ', '.join(f'{name}={v}' for name, v in bad.items())
        last = _last_checkpoint(runner.work_dir)
        lines = [f'non-finite loss at iteration {iteration} (epoch {runner.epoch}): {terms}.']
        if finite:
            lines.append('finite terms at that step: ' + ', '.join(f'{n}={v:.4g}' for n, v in finite.items()))
        lines.append('Training stopped; no checkpoint was written for this iteration. '
                     + (f'The last good checkpoint is {last} (continue with --resume after lowering the '
                        'learning rate or fixing the data).' if last else 'No checkpoint had been saved yet.'))
        raise NonFiniteLossError('\n'.join(lines))
