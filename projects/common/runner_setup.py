"""What tools/train.py and tools/test.py share: loading a config, adapting it to the machine, building
the runner with clear errors."""
from __future__ import annotations

import contextlib
import difflib
import os
import os.path as osp
import sys
import warnings
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import torch

from .config_errors import explain_build_error
from .errors import BadInputError


class ConfigOptionWarning(UserWarning):
    """A ``--cfg-options`` key that will probably not do what the user meant."""


class ConfigOptionError(BadInputError, ValueError):
    """A ``--cfg-options`` item that cannot work: not ``KEY=VALUE``, a value of the wrong type, or a keyword the
    class that reads it does not take."""


def check_key_value_pairs(option: Optional[str], items) -> None:
    """Raise :class:`ConfigOptionError` for a ``--cfg-options`` item without ``=`` (mmengine's ``DictAction``
    fails on it with "not enough values to unpack"); called by the tools' argument actions."""
    for item in items or ():
        key, sep, _ = str(item).partition('=')
        if not sep or not key.strip():
            raise ConfigOptionError(f'{option or "--cfg-options"} {item}: expected KEY=VALUE')


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


_KINDS = ((bool, 'true or false'), (int, 'an int'), (float, 'a float'))


def _held_kind(value: Any) -> Optional[Tuple[type, str]]:
    """(type, description) the config's value asks for, for the scalar types whose readers convert or compute with
    them (``int(max_iters)``, ``lr * factor``); None for anything else (strings, lists, dicts and None are often
    one of several accepted forms: ``arch='small'`` or a dict, ``metric='bbox'`` or a list)."""
    return next(((kind, text) for kind, text in _KINDS if type(value) is kind), None)


def _type_error(key: str, value: Any, old: Any, filename: str) -> Optional[str]:
    """The reason ``value`` cannot replace ``old`` at ``key``, or None; see :func:`check_cfg_options`."""
    held = _held_kind(old)
    if held is None or value is None:
        return None
    kind, text = held
    given = type(value)
    if kind is bool:
        ok = given is bool or (given is int and value in (0, 1))
    elif given in (list, tuple):
        ok = True  # many sizes are an int or a pair: img_size=64 or img_size=[64,96]
    elif kind is int:
        ok = given is int or (given is float and value == value and abs(value) != float('inf'))
    else:
        ok = given in (int, float)
    if ok:
        return None
    what = f'the string {value!r}' if isinstance(value, str) else f'{value!r} (a {given.__name__})'
    return f'--cfg-options {key}={value}: expected {text} (the config has {key} = {old!r}; {filename}), got {what}'


def _find_class(name: Any, scope: Optional[str]) -> Optional[Callable]:
    """The class or function a config ``type`` names, searched in the config's scope and mmengine's registries;
    None when no registry or several different objects answer to the name."""
    if callable(name):
        return name
    if not isinstance(name, str):
        return None
    import importlib

    from mmengine.registry import Registry
    found = []
    for package in dict.fromkeys([p for p in (scope, 'mmengine') if p]):
        try:
            module = importlib.import_module(f'{package}.registry')
        except ImportError:
            continue
        for registry in vars(module).values():
            if not isinstance(registry, Registry):
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter('ignore')
                    obj = registry.get(name)
            except Exception:  # a registry whose modules cannot be imported here: it does not answer
                obj = None
            if obj is not None and all(obj is not f for f in found):
                found.append(obj)
    return found[0] if len(found) == 1 else None


def _accepts_keyword(obj: Callable, name: str) -> Optional[bool]:
    """Whether calling ``obj`` accepts the keyword ``name``; None when it takes ``**kwargs`` (it may be passed on)."""
    import inspect
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return True if any(p.name == name for p in params) else None
    return any(p.name == name and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in params)


# Keys that the code building a dict reads itself instead of passing them to its type: mmengine's registry takes
# _scope_, the optimizer-wrapper constructor takes constructor / paramwise_cfg / optimizer.
_BUILDER_KEYS = {'': {'_scope_'}, 'optim_wrapper': {'constructor', 'paramwise_cfg', 'optimizer'}}
# The loops mmengine's Runner builds for a loop config without ``type`` (``build_train_loop`` & co.), by by_epoch.
_IMPLICIT_LOOPS = {'train_cfg': ('IterBasedTrainLoop', 'EpochBasedTrainLoop'), 'val_cfg': ('ValLoop', 'ValLoop'),
                   'test_cfg': ('TestLoop', 'TestLoop')}


def check_cfg_options(cfg, cfg_options: Dict[str, Any], filename: str) -> List[str]:
    """Check ``--cfg-options`` before they are merged: raise for one that cannot work, warn about one that will
    probably not do what was meant.

    * A value of another type than the config holds for the key (``train_cfg.max_iters=abc``, ``lr=fast``)
      raises :class:`ConfigOptionError` naming the key, the value and the type expected; otherwise it fails
      deep inside the run (``int('abc')`` in the loop, ``'fast' * 0.1`` in the scheduler). Checked where the
      config holds a bool, an int or a float. An int key also takes a float: ``max_iters=1e5``, and a threshold
      the config disables with an int (``ignore_iof_thr=-1``) may be given a fraction; a number key takes a list
      or tuple (``img_size=[64,96]``: many sizes are an int or a pair); any key takes ``None``.
    * A new key inside a dict with a ``type`` becomes a keyword argument of that type when it is built: when the
      type does not take it (``train_cfg.max_iter=2`` for ``IterBasedTrainLoop``) that build would fail, so it
      raises now with the nearest existing keys; a keyword the type takes (``train_cfg.val_begin``) is fine.
    * mmengine's ``merge_from_dict`` adds any other unknown key silently (``max_iters=2`` when the config has
      only ``train_cfg.max_iters``): warned with the nearest existing keys.
    * A top-level variable such as ``data_root`` is only read while the config file is parsed: setting it
      afterwards leaves every key derived from it unchanged (warned).

    Returns the warnings issued.
    """
    flat = _flat_keys(cfg.to_dict() if hasattr(cfg, 'to_dict') else dict(cfg))
    scope = flat.get('default_scope') if isinstance(flat.get('default_scope'), str) else None
    messages = []
    for key, value in cfg_options.items():
        if key in flat:
            error = _type_error(key, value, flat[key], filename)
            if error:
                raise ConfigOptionError(error)
    for key in cfg_options:
        leaf = key.split('.')[-1]
        if key not in flat and key.split('.')[0] in _runner_keys() and key.split('.')[0] not in flat:
            continue  # e.g. work_dir, load_from, env_cfg.*: read by the runner even when the config omits them
        if key not in flat:
            parts = key.split('.')
            absent = next((p for p in ('.'.join(parts[:i]) for i in range(1, len(parts))) if p not in flat), None)
            same_leaf = sorted(k for k in flat if k.split('.')[-1] == leaf and k != key)
            candidates = [k for k in flat if not key.startswith(k + '.') and k.split('.')[-1] != 'type']
            close = difflib.get_close_matches(key, candidates, n=5, cutoff=0.6)
            nearest = list(dict.fromkeys(same_leaf + close))[:5]
            nearest_text = ' Nearest existing keys: ' + (', '.join(nearest) if nearest else 'none')
            parent = '.'.join(parts[:-1])
            built = flat.get(f'{parent}.type') if parent and not absent else None
            if built is None and parent in _IMPLICIT_LOOPS and not absent and leaf != 'by_epoch':
                built = _IMPLICIT_LOOPS[parent][bool(flat.get(f'{parent}.by_epoch'))]
            if built is not None and leaf in _BUILDER_KEYS[''] | _BUILDER_KEYS.get(parent, set()):
                continue  # read by the builder, e.g. optim_wrapper.paramwise_cfg
            if built is not None:
                target = _find_class(built, scope)
                accepts = _accepts_keyword(target, leaf) if target is not None else None
                name = getattr(target, '__name__', str(built))
                if accepts:
                    continue  # a keyword argument the built type takes, e.g. train_cfg.val_begin
                if accepts is False:
                    raise ConfigOptionError(
                        f"--cfg-options {key}: the config has no key '{key}', and {name} ({parent}.type) takes no "
                        f"argument '{leaf}', so building it would fail ({filename}).{nearest_text}")
                where = (f"the config has no key '{key}'; it is added and passed to {name} ({parent}.type) as the "
                         f"keyword argument '{leaf}', which {name} takes only through **kwargs: it is ignored or "
                         'refused further down')
            elif absent:
                where = f"the config has no '{absent}', so '{key}' creates it"
            elif parent:
                where = (f"the config has no key '{key}'; it is added to '{parent}', which has no type: it is read "
                         f"only if the code that uses '{parent}' looks for '{leaf}' (a keyword it does not take "
                         'fails there)')
            else:
                where = f"the config has no key '{key}'; it is added, but nothing reads it"
            messages.append(f'--cfg-options {key}: {where} ({filename}).{nearest_text}')
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
    """Run a tool's ``main``; bad input (:class:`BadInputError`, a missing file) and a failed checkpoint or
    metrics write (:class:`~projects.common.checkpoint.FileWriteError`, e.g. a full disk) end the process with
    exit status 1 and the error's message on stderr instead of a traceback."""
    from .checkpoint import FileWriteError
    try:
        return main(*args, **kwargs)
    except (BadInputError, FileNotFoundError, FileWriteError) as exc:
        name = osp.basename(sys.argv[0]) if sys.argv and sys.argv[0] else 'tool'
        sys.exit(f'{name}: error: {exc}')


def is_rank_zero() -> bool:
    """Rank 0 of a torchrun / slurm / single-process launch (before the process group exists)."""
    return int(os.environ.get('RANK', os.environ.get('SLURM_PROCID', '0'))) == 0
