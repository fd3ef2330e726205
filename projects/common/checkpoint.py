"""Checkpoint compatibility and safety.

torch >= 2.6 loads with ``weights_only=True``; mmengine 0.10.7 checkpoints hold a few
non-tensor objects in ``message_hub`` and ``meta`` (``HistoryBuffer``, numpy scalars, arrays and dtypes), so
``--resume`` fails with ``UnpicklingError``. Rather than switching ``weights_only`` off for every load
(``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``, which also trusts arbitrary pickles), we allow exactly the
classes mmengine writes, via ``torch.serialization.add_safe_globals``. ``tests/test_common`` saves a real
runner checkpoint and loads it with ``weights_only=True``; if a future mmengine writes something new,
that test names the class.

Loading: :func:`load_checkpoint_file` is the one way the repository reads a ``.pth``; it is also registered as
mmengine's loader for local paths, so ``load_from``, ``--resume`` and ``init_cfg`` go through it. It loads with
``weights_only=True`` (an untrusted file never runs code), says "FILE is not a PyTorch checkpoint" for anything
``torch.save`` did not write, and names the object a refused pickle asks for. ``builtins.getattr``, which
mmengine's ``HistoryBuffer`` pickles its statistics methods with (``getattr(HistoryBuffer, 'min')``), is
allowed only as :func:`history_buffer_getattr`: exactly those attributes of exactly that class. The config text
mmengine stores in ``meta['cfg']`` is read with :func:`config_from_text`, which parses it and never executes it.

Writes: mmengine's ``LocalBackend.put`` opens the target with ``'wb'`` and writes in place, so a kill
mid-write leaves a truncated ``epoch_N.pth``/``iter_N.pth`` that ``--resume auto`` then picks up.
:class:`AtomicLocalBackend` writes to a temporary file in the same folder, fsyncs it and renames it
over the target, so a checkpoint is either the old one or the complete new one. The file gets the mode a
plain ``open()`` would give it (``0o666`` minus the umask), not ``mkstemp``'s ``0o600``. A kill between the
two steps leaves ``.NAME.XXXX.tmp``; :func:`remove_stale_temporaries` deletes those when the next run starts.
A write that fails (a full disk) raises :class:`FileWriteError` naming the file, with the target unchanged.
"""
from __future__ import annotations

import ast
import errno
import glob
import logging
import os
import os.path as osp
import pickle
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterator, List, Optional, Tuple, Union

import numpy as np
import torch
from mmengine.fileio.backends import LocalBackend, register_backend

from .errors import BadInputError

_REGISTERED = False


class CheckpointFileError(BadInputError, ValueError):
    """A checkpoint file that cannot be loaded; the message names the file and the reason."""


class NotACheckpointError(CheckpointFileError):
    """The file was not written by ``torch.save`` (an image, a text file, a truncated download)."""


class UnsafeCheckpointError(CheckpointFileError):
    """The file's pickle asks for an object that loading a checkpoint must not create or call."""


# The statistics methods HistoryBuffer pickles by name (mmengine 0.10: min, max, current, mean).
_HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')


def history_buffer_getattr(obj: Any, name: str) -> Any:
    """The only ``getattr`` a checkpoint may call: ``getattr(HistoryBuffer, 'min' | 'max' | 'current' | 'mean')``.

    Registered for the pickled name ``builtins.getattr``; any other object or attribute is refused, so a pickle
    cannot walk from an allowed class to its functions' ``__globals__`` or other attributes.
    """
    from mmengine.logging.history_buffer import HistoryBuffer
    if obj is HistoryBuffer and name in _HISTORY_BUFFER_METHODS:
        return getattr(obj, name)
    raise pickle.UnpicklingError(f'getattr({getattr(obj, "__name__", type(obj).__name__)}, {name!r}) is not '
                                 'allowed in a checkpoint')


def _safe_globals() -> list:
    from mmengine.logging.history_buffer import HistoryBuffer
    classes: List[Any] = [HistoryBuffer, (history_buffer_getattr, 'builtins.getattr'), np.ndarray, np.dtype]
    try:  # numpy >= 2 moved the private module; the pickles name whichever numpy wrote them
        from numpy._core.multiarray import _reconstruct, scalar
        classes += [_reconstruct, scalar]
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar
        classes += [_reconstruct, scalar]
    # numpy scalar and dtype classes as pickled by numpy 2 (np.float64 and np.dtypes.Float64DType ...)
    for name in ('bool_', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32', 'uint64',
                 'float16', 'float32', 'float64', 'longlong', 'ulonglong', 'intc', 'uintc'):
        classes.append(getattr(np, name))
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        classes += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith('DType')]
    return classes


def _describe_start(head: bytes) -> str:
    if head.startswith(b'\xff\xd8\xff'):
        return 'it is a JPEG image'
    if head.startswith(b'\x89PNG'):
        return 'it is a PNG image'
    if head.startswith(b'\x1f\x8b'):
        return 'it is gzip-compressed'
    if not head:
        return 'it is empty'
    try:
        text = head.decode('utf-8')
    except UnicodeDecodeError:
        return f'it starts with the bytes {head[:8]!r}'
    return f'it is a text file starting {text[:20]!r}'


_REFUSED = (re.compile(r'(getattr\([^)]*\)) is not allowed'), re.compile(r'GLOBAL ([\w.]+)'),
            re.compile(r'unrecognized function ([^\s]+(?: [^\s]+)?)'))


def load_checkpoint_file(path: Union[str, Path], map_location: Any = 'cpu') -> Any:
    """``torch.load(path, weights_only=True)`` with errors that name the file and never run code.

    Raises:
        FileNotFoundError: no such file.
        NotACheckpointError: the file is not something ``torch.save`` wrote, or it is truncated.
        UnsafeCheckpointError: the pickle asks for an object outside the allowlist (see module docstring).
    """
    register_checkpoint_safe_globals()
    path = osp.expanduser(os.fspath(path))
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint file not found: {path}')
    with open(path, 'rb') as f:
        head = f.read(32)
    # torch.save writes a zip archive (torch >= 1.6) or, in the legacy format, a pickle (protocol >= 2: 0x80).
    if not (head.startswith(b'PK\x03\x04') or head[:1] == b'\x80'):
        raise NotACheckpointError(f'{path} is not a PyTorch checkpoint ({_describe_start(head)}); expected a '
                                  'file written by torch.save, e.g. a training checkpoint iter_N.pth')
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        found = next((m.group(1) for pattern in _REFUSED for m in [pattern.search(text)] if m), None)
        raise UnsafeCheckpointError(
            f'{path}: refused to load: its pickle asks for {found or "an object"}, which a checkpoint may not '
            'contain (only tensors, containers, numbers and the numpy / mmengine logging types mmengine '
            'writes are allowed). Loading it could run code from the file, so it is not loaded; if you wrote '
            'it yourself, save plain tensors and numbers instead.') from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise NotACheckpointError(f'{path} is not a PyTorch checkpoint or is truncated '
                                  f'({type(exc).__name__}: {str(exc).split(". ")[0]})') from None


def _load_from_local(filename: str, map_location=None):
    """mmengine's ``CheckpointLoader`` scheme for local paths, through :func:`load_checkpoint_file`."""
    return load_checkpoint_file(filename, map_location=map_location)


def register_checkpoint_safe_globals() -> None:
    """Allow the non-tensor objects mmengine writes into checkpoints (idempotent)."""
    global _REGISTERED
    if _REGISTERED or not hasattr(torch.serialization, 'add_safe_globals'):
        return
    _REGISTERED = True
    torch.serialization.add_safe_globals(_safe_globals())
    register_backend('local', AtomicLocalBackend, force=True, prefixes='')
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(prefixes='', loader=_load_from_local, force=True)


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask is process-wide and racy with threads)
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('Umask:'):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class FileWriteError(OSError):
    """Writing a checkpoint, a metrics file or a backbone failed (disk full, quota, permissions, I/O); the message
    names the file and says what is on disk. ``errno`` and ``filename`` are those of the failure."""

    def __init__(self, code: Optional[int], message: str, filename: str):
        super().__init__(code, os.strerror(code) if code else message, filename)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _write_failed(exc: OSError, filepath: str, folder: str) -> FileWriteError:
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        reason += f' (free space in {folder}, or write elsewhere)'
    kept = (f'{filepath} is unchanged: the previous file is kept' if osp.exists(filepath)
            else f'{filepath} was not created')
    return FileWriteError(exc.errno, f'cannot write {filepath}: {reason}. Nothing was replaced: {kept}, and the '
                          'partial temporary file was removed.', filepath)


def atomic_write_bytes(data: bytes, filepath: Union[str, Path]) -> None:
    """Write ``data`` to ``filepath`` so that readers see either the old file or the whole new one.

    A failed write (``ENOSPC`` when the disk is full, ...) raises :class:`FileWriteError` naming ``filepath``;
    the target keeps its previous content and the temporary file is removed.
    """
    filepath = os.fspath(filepath)
    folder = osp.dirname(osp.abspath(filepath))
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix='.' + osp.basename(filepath) + '.', suffix='.tmp', dir=folder)
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filepath)
    except BaseException as exc:
        if tmp is not None and osp.exists(tmp):
            os.remove(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, FileWriteError):
            raise _write_failed(exc, filepath, folder) from exc
        raise


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend with atomic ``put``/``put_text`` (see module docstring), and a recursive
    listing that survives a symlink loop.

    mmengine's ``list_dir_or_file(recursive=True)`` (the image-folder scan of mmpretrain's ``CustomDataset``)
    follows a folder symlink that points back to a folder it is inside until the path is too long to resolve,
    listing every file again at each level, and then stops the whole scan with ``OSError: [Errno 40] Too many
    levels of symbolic links``. Here such a link is skipped with a warning (its files are listed once, where
    they are), and so is a subfolder that cannot be listed, as unreadable image files are skipped when loaded;
    a ``dir_path`` that cannot be listed still raises.
    """

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        atomic_write_bytes(obj, filepath)

    def put_text(self, obj: str, filepath: Union[str, Path], encoding: str = 'utf-8') -> None:
        atomic_write_bytes(obj.encode(encoding), filepath)

    def list_dir_or_file(self, dir_path: Union[str, Path], list_dir: bool = True, list_file: bool = True,
                         suffix: Union[str, Tuple[str, ...], None] = None, recursive: bool = False) -> Iterator[str]:
        if list_dir and suffix is not None:
            raise TypeError('`suffix` should be None when `list_dir` is True')
        if (suffix is not None) and not isinstance(suffix, (str, tuple)):
            raise TypeError('`suffix` must be a string or tuple of strings')
        root = dir_path

        def folder_id(path) -> Optional[Tuple[int, int]]:
            try:
                st = os.stat(path)
            except OSError:
                return None
            return st.st_dev, st.st_ino

        def scan(path, inside: frozenset) -> Iterator[str]:
            try:
                with os.scandir(path) as it:
                    entries = list(it)
            except OSError as exc:
                if path is root:
                    raise
                _warn(f'cannot list the folder {path} ({exc.strerror or exc}); skipped, with everything in it')
                return
            for entry in entries:  # the same order and rules as mmengine's LocalBackend.list_dir_or_file
                if not entry.name.startswith('.') and entry.is_file():
                    rel_path = osp.relpath(entry.path, root)
                    if (suffix is None or rel_path.endswith(suffix)) and list_file:
                        yield rel_path
                elif osp.isdir(entry.path):
                    key = folder_id(entry.path) if recursive else None
                    if key is not None and key in inside:
                        _warn(f'{entry.path} is a symbolic link to {osp.realpath(entry.path)}, a folder it is '
                              'inside (a symlink loop); not followed: the files there are listed once')
                        continue
                    if list_dir:
                        yield osp.relpath(entry.path, root)
                    if recursive:
                        yield from scan(entry.path, inside | {key})

        return scan(dir_path, frozenset({folder_id(dir_path)}))


def _warn(msg: str) -> None:
    from mmengine.logging import print_log
    print_log(msg, logger='current', level=logging.WARNING)


_TEMP_NAME = re.compile(r'^\..+\.[A-Za-z0-9_]{8}\.tmp$')  # '.' + target name + '.' + mkstemp's 8 characters


def remove_stale_temporaries(folder: Union[str, Path]) -> List[str]:
    """Delete the ``.NAME.XXXXXXXX.tmp`` files a killed :func:`atomic_write_bytes` left in ``folder``.

    Call it when a run starts, before anything writes into ``folder``; returns the removed paths.
    """
    removed = []
    for path in glob.glob(osp.join(glob.escape(os.fspath(folder)), '.*.tmp')):
        if _TEMP_NAME.match(osp.basename(path)) and osp.isfile(path):
            try:
                os.remove(path)
                removed.append(path)
            except FileNotFoundError:  # removed meanwhile by another rank
                pass
    return removed


_RUN_CHECKPOINT = re.compile(r'^(iter|epoch)_(\d+)\.pth$')


def latest_checkpoint(work_dir: Union[str, Path]) -> Union[str, None]:
    """The newest ``iter_N.pth``/``epoch_N.pth`` in ``work_dir``, or ``None``.

    mmengine's ``--resume auto`` reads ``work_dir/last_checkpoint``, which ``CheckpointHook`` writes *after* the
    checkpoint itself. A run killed between the two leaves a complete ``iter_N.pth`` that the record does not
    name (or no record at all), and mmengine then resumes from an older checkpoint or silently starts again
    from iteration 0. Every checkpoint file is complete (:class:`AtomicLocalBackend`), so the newest file on
    disk is the right place to continue; the record is considered too, for checkpoints saved elsewhere.
    """
    folder = os.fspath(work_dir)
    candidates = []
    if osp.isdir(folder):
        for name in os.listdir(folder):
            match = _RUN_CHECKPOINT.match(name)
            if match:
                candidates.append(osp.join(folder, name))
    record = osp.join(folder, 'last_checkpoint')
    if osp.isfile(record):
        with open(record) as f:
            recorded = f.read().strip()
        if recorded and osp.isfile(recorded) and recorded not in candidates:
            candidates.append(recorded)
    if not candidates:
        return None

    def order(path):
        match = _RUN_CHECKPOINT.match(osp.basename(path))
        return os.stat(path).st_mtime_ns, int(match.group(2)) if match else -1

    return max(candidates, key=order)


# ----- the config text a checkpoint stores -------------------------------------------------------------------------

_LITERALS = (str, bytes, int, float, bool, type(None))


class _StoredConfigError(Exception):
    """A construct outside what ``pretty_text`` writes, at line ``lineno`` (0: not one line)."""

    def __init__(self, lineno: int, what: str):
        super().__init__(what)
        self.lineno, self.what = lineno, what


def _describe(node: ast.AST) -> str:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return 'an import statement'
    if isinstance(node, ast.Call):
        return f'a call to {ast.unparse(node.func)}()'
    if isinstance(node, ast.Attribute):
        return f'attribute access {ast.unparse(node)}'
    if isinstance(node, ast.Name):
        return f'the name {node.id}'
    if isinstance(node, ast.stmt):
        return f'a {type(node).__name__} statement (only `name = value` is read)'
    return f'the expression {ast.unparse(node)[:60]}'


def _refuse(node: ast.AST, what: str = '') -> _StoredConfigError:
    return _StoredConfigError(getattr(node, 'lineno', 0), what or _describe(node))


def _literal(node: ast.AST) -> Any:
    """Evaluate the node types ``cfg.pretty_text`` writes; anything else raises :class:`_StoredConfigError`."""
    if isinstance(node, ast.Constant) and isinstance(node.value, _LITERALS):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)) \
            and isinstance(node.operand, ast.Constant) and type(node.operand.value) in (int, float):
        return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
    if isinstance(node, (ast.List, ast.Tuple)):
        values = [_literal(elt) for elt in node.elts]
        return values if isinstance(node, ast.List) else tuple(values)
    if isinstance(node, ast.Dict):
        if any(key is None for key in node.keys):
            raise _refuse(node, '** unpacking in a dict')
        return _checked_dict(node, [(_literal(k), _literal(v)) for k, v in zip(node.keys, node.values)])
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == 'dict':
        # pretty_text writes dict(key=value, ...), and dict({'.key': value}) for keys that are not identifiers
        first = [_literal(arg) for arg in node.args]
        if len(first) > 1 or (first and not isinstance(first[0], dict)) or any(kw.arg is None for kw in node.keywords):
            raise _refuse(node, 'a dict() call other than dict(key=value, ...) or dict({...})')
        return _checked_dict(node, list(first[0].items() if first else ()) +
                             [(kw.arg, _literal(kw.value)) for kw in node.keywords])
    raise _refuse(node)


def _checked_dict(node: ast.AST, items: list) -> dict:
    try:
        return dict(items)
    except TypeError:  # an unhashable key, e.g. a list
        raise _refuse(node, 'a dict key that is not a string, number or tuple') from None


def _stored_assignments(tree: ast.Module) -> tuple:
    """(name -> value, name -> line) of the module's ``name = value`` statements."""
    values, lines = {}, {}
    for stmt in tree.body:
        if not isinstance(stmt, ast.Assign) or not all(isinstance(t, ast.Name) for t in stmt.targets):
            raise _refuse(stmt)
        value = _literal(stmt.value)
        for target in stmt.targets:
            values[target.id], lines[target.id] = value, stmt.lineno
    return values, lines


def _check_custom_imports(values: dict, lines: dict) -> None:
    """Using the config imports ``custom_imports``, and importing a module runs it: a stored config may name only
    this repository's packages (``projects.*``)."""
    if values.get('custom_imports') is None:
        return
    names = values['custom_imports'].get('imports') if isinstance(values['custom_imports'], dict) else None
    names = [names] if isinstance(names, str) else names
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise _StoredConfigError(lines['custom_imports'], 'custom_imports other than dict(imports=[module names])')
    outside = [n for n in names if n != 'projects' and not n.startswith('projects.')]
    if outside:
        raise _StoredConfigError(lines['custom_imports'],
                                 f'custom_imports of modules outside projects.*: {", ".join(outside)}')


def config_from_text(text: str, source: str):
    """The mmengine ``Config`` that ``text`` (a checkpoint's ``meta['cfg']``, i.e. ``cfg.pretty_text``) describes,
    read without executing it.

    mmengine reads config text by executing it as Python, so reading a checkpoint's config that way would run
    whatever the file holds. ``pretty_text`` only assigns literals, lists, tuples, dicts, ``dict(...)`` calls and
    negative numbers to names; exactly those are evaluated here (with :mod:`ast`). Anything else raises
    :class:`CheckpointFileError` naming ``source``, the line and the construct. ``custom_imports`` may name only
    ``projects.*`` modules. ``source`` (the checkpoint path) becomes the config's ``filename`` for messages.
    """
    from mmengine.config import Config

    def refuse(line: int, what: str) -> CheckpointFileError:
        where = f', line {line}' if line else ''
        return CheckpointFileError(
            f'{source}: the config stored in the checkpoint (meta.cfg{where}) has {what}. It is parsed, never '
            'executed, so only `name = value` with literals, lists, tuples, dicts and dict(...) is read; pass the '
            'pre-training config file with --config instead.')

    try:
        values, lines = _stored_assignments(ast.parse(text, filename=f'{source} (meta.cfg)'))
        _check_custom_imports(values, lines)
    except SyntaxError as exc:
        raise refuse(exc.lineno or 0, f'invalid Python syntax ({exc.msg})') from None
    except (RecursionError, MemoryError):
        raise refuse(0, 'nesting too deep to read') from None
    except _StoredConfigError as exc:
        raise refuse(exc.lineno, exc.what) from None
    if not values:
        raise refuse(0, 'no settings')
    try:
        return Config(values, cfg_text=text, filename=source)
    except KeyError as exc:  # a name mmengine reserves: filename, text, pretty_text, env_variables
        raise refuse(0, f'a reserved name ({exc.args[0]})') from None


def config_of_checkpoint(path: str, seen=()):
    """The mmengine config stored in a checkpoint's ``meta.cfg``, following a backbone file's ``meta.source``
    (extract_backbone.py) to its pre-training checkpoint; None when neither is there. The file is read with
    ``weights_only=True`` and the config text is parsed, never executed (a checkpoint may come from anyone)."""
    ckpt = load_checkpoint_file(path)
    meta = ckpt.get('meta') or {} if isinstance(ckpt, dict) else {}
    if isinstance(meta.get('cfg'), str):
        return config_from_text(meta['cfg'], path)
    src = meta.get('source')
    if isinstance(src, str) and osp.isfile(src) and src not in seen:
        return config_of_checkpoint(src, seen + (path, ))
    return None
