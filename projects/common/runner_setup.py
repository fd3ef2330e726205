"""What tools/train.py and tools/test.py share: loading a config, adapting it to the machine, building
the runner with clear errors."""
from __future__ import annotations

import contextlib
import difflib
import os
import os.path as osp
import sys
import warnings
from typing import Any, Callable, Dict, Iterator, List, Optional

import torch

from .config_errors import explain_build_error
from .errors import BadInputError


class ConfigOptionWarning(UserWarning):
    """A ``--cfg-options`` key that will probably not do what the user meant."""


def _flat_keys(node: Any, prefix: str = '') -> Dict[str, Any]:
    """Every dotted key path of a config (dicts only; list items are not addressable by --cfg-options)."""
    out = {}
    if isinstance(node, dict):
        for key, value in node.items():
            path = f'{prefix}.{key}' if prefix else str(key)
            out[path] = value
            out.update(_flat_keys(value, path))
    return out


def _runner_keys() -> set:
    """Top-level keys mmengine's Runner (``Runner.from_cfg``) and the tools read, present in a config or not."""
    import inspect

    from mmengine.runner import Runner
    return set(inspect.signature(Runner.__init__).parameters) | {
        'runner_type', 'model_wrapper_cfg', 'log_level', 'custom_imports', 'compile', 'auto_scale_lr', 'work_dir'}


def check_cfg_options(cfg, cfg_options: Dict[str, Any], filename: str) -> List[str]:
    """Warn about ``--cfg-options`` keys that are not in the config, or that set a top-level variable.

    mmengine's ``merge_from_dict`` adds an unknown key silently (``max_iters=2`` when the config has only
    ``train_cfg.max_iters``), and a top-level variable such as ``data_root`` is only read while the config file
    is parsed: setting it afterwards leaves every key derived from it unchanged. Returns the warnings issued.
    """
    flat = _flat_keys(cfg.to_dict() if hasattr(cfg, 'to_dict') else dict(cfg))
    messages = []
    for key in cfg_options:
        leaf = key.split('.')[-1]
        if key not in flat and key.split('.')[0] in _runner_keys() and key.split('.')[0] not in flat:
            continue  # e.g. work_dir, load_from, env_cfg.*: read by the runner even when the config omits them
        if key not in flat:
            parts = key.split('.')
            absent = next((p for p in ('.'.join(parts[:i]) for i in range(1, len(parts))) if p not in flat), None)
            if absent:
                where = f"the config has no '{absent}', so '{key}' creates it"
            else:
                where = f"the config has no key '{key}'; it is added, but nothing reads it"
            same_leaf = sorted(k for k in flat if k.split('.')[-1] == leaf and k != key)
            close = difflib.get_close_matches(key, list(flat), n=5, cutoff=0.6)
            nearest = list(dict.fromkeys(same_leaf + close))[:5]
            messages.append(f'--cfg-options {key}: {where} ({filename}). Nearest existing keys: '
                            + (', '.join(nearest) if nearest else 'none'))
        elif '.' not in key and not isinstance(flat[key], dict):
            old = flat[key]
            derived = sorted(k for k, v in flat.items() if k != key and not isinstance(v, dict) and (
                (k.split('.')[-1] == key and v == old)
                or (isinstance(old, str) and len(old) >= 3 and isinstance(v, str) and v.startswith(old))))
            if derived:
                messages.append(f'--cfg-options {key}: {key!r} is a top-level variable of {filename}; it was '
                                'read when the file was parsed, so the keys computed from it keep their values: '
                                + ', '.join(derived[:8]) + ('...' if len(derived) > 8 else '')
                                + '. Set those keys instead.')
    for msg in messages:
        warnings.warn(msg, ConfigOptionWarning, stacklevel=2)
    return messages


def load_config(path: str, cfg_options: Optional[dict] = None):
    """``Config.fromfile`` with a clear error for a missing file, plus ``--cfg-options`` (checked: see
    :func:`check_cfg_options`)."""
    from mmengine.config import Config
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file not found: {path}')
    cfg = Config.fromfile(path)
    if cfg_options:
        check_cfg_options(cfg, cfg_options, path)
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


def exit_on_bad_input(main: Callable, *args, **kwargs):
    """Run a tool's ``main``; bad input (:class:`BadInputError`, a missing file) ends the process with exit
    status 1 and the error's message on stderr instead of a traceback."""
    try:
        return main(*args, **kwargs)
    except (BadInputError, FileNotFoundError) as exc:
        name = osp.basename(sys.argv[0]) if sys.argv and sys.argv[0] else 'tool'
        sys.exit(f'{name}: error: {exc}')


def is_rank_zero() -> bool:
    """Rank 0 of a torchrun / slurm / single-process launch (before the process group exists)."""
    return int(os.environ.get('RANK', os.environ.get('SLURM_PROCID', '0'))) == 0
