"""What tools/train.py and tools/test.py share: loading a config, adapting it to the machine, building
the runner with clear errors."""
from __future__ import annotations

import contextlib
import os
import os.path as osp
from typing import Iterator, Optional

import torch

from .config_errors import explain_build_error


def load_config(path: str, cfg_options: Optional[dict] = None):
    """``Config.fromfile`` with a clear error for a missing file, plus ``--cfg-options``."""
    from mmengine.config import Config
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file not found: {path}')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def _log(msg: str) -> None:
    from mmengine.logging import print_log
    print_log(msg, logger='current')


def adapt_to_device(cfg) -> None:
    """Make a GPU config run on a machine without CUDA instead of failing deep inside mmengine.

    * ``AmpOptimWrapper`` asserts a CUDA device in mmengine 0.10.7: fall back to fp32 ``OptimWrapper``.
    * Distributed runs use gloo, DDP without ``device_ids``, and a process group initialised here
      (mmengine's pytorch launcher calls ``torch.cuda.set_device``, which fails without a GPU).
    Each change is logged.
    """
    if torch.cuda.is_available():
        return
    ow = cfg.get('optim_wrapper')
    if ow is not None and str(ow.get('type', '')).split('.')[-1] == 'AmpOptimWrapper':
        ow.type = 'OptimWrapper'
        for key in ('loss_scale', 'dtype'):
            ow.pop(key, None)
        _log('no CUDA device: AmpOptimWrapper replaced by OptimWrapper (fp32)')
    if cfg.get('launcher', 'none') == 'none':
        return
    env_cfg = cfg.setdefault('env_cfg', {})
    dist_cfg = env_cfg.setdefault('dist_cfg', {})
    if dist_cfg.get('backend', 'nccl') == 'nccl':
        dist_cfg['backend'] = 'gloo'
    wrapper = cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel')
    wrapper.setdefault('device_ids', None)
    wrapper.setdefault('broadcast_buffers', False)
    cfg.model_wrapper_cfg = wrapper
    if cfg.launcher == 'pytorch':
        import torch.distributed as dist
        if not dist.is_initialized():
            dist.init_process_group(backend=dist_cfg['backend'], rank=int(os.environ['RANK']),
                                    world_size=int(os.environ['WORLD_SIZE']))


@contextlib.contextmanager
def clear_config_errors(cfg, filename: Optional[str]) -> Iterator[None]:
    """Re-raise "X is not in the registry" errors with the config file, key and registries named."""
    try:
        yield
    except KeyError as exc:
        better = explain_build_error(exc, cfg, filename)
        if better is None:
            raise
        raise better from exc


def build_runner(cfg, filename: Optional[str] = None):
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    with clear_config_errors(cfg, filename):
        if 'runner_type' not in cfg:
            return Runner.from_cfg(cfg)
        return RUNNERS.build(cfg)
