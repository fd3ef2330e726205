"""Checkpoint compatibility and safety.

Decision (issue 2): torch >= 2.6 loads with ``weights_only=True``; mmengine 0.10.7 checkpoints hold a few
non-tensor objects in ``message_hub`` and ``meta`` (``HistoryBuffer``, numpy scalars, arrays and dtypes), so
``--resume`` fails with ``UnpicklingError``. Rather than switching ``weights_only`` off for every load
(``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``, which also trusts arbitrary pickles), we allow exactly the
classes mmengine writes, via ``torch.serialization.add_safe_globals``. ``tests/test_common`` saves a real
runner checkpoint and loads it with ``weights_only=True``; if a future mmengine writes something new,
that test names the class.

Writes: mmengine's ``LocalBackend.put`` opens the target with ``'wb'`` and writes in place, so a kill
mid-write leaves a truncated ``epoch_N.pth``/``iter_N.pth`` that ``--resume auto`` then picks up.
:class:`AtomicLocalBackend` writes to a temporary file in the same folder, fsyncs it and renames it
over the target, so a checkpoint is either the old one or the complete new one.
"""
from __future__ import annotations

import os
import os.path as osp
import tempfile
from pathlib import Path
from typing import Union

import numpy as np
import torch
from mmengine.fileio.backends import LocalBackend, register_backend

_REGISTERED = False


def _safe_globals() -> list:
    from mmengine.logging.history_buffer import HistoryBuffer
    # HistoryBuffer pickles its statistics methods as getattr(HistoryBuffer, 'min'). Allowing getattr is
    # safe enough here: the weights_only unpickler still refuses to *call* anything not on this list.
    classes = [HistoryBuffer, getattr, np.ndarray, np.dtype]
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


def register_checkpoint_safe_globals() -> None:
    """Allow the non-tensor objects mmengine writes into checkpoints (idempotent)."""
    global _REGISTERED
    if _REGISTERED or not hasattr(torch.serialization, 'add_safe_globals'):
        return
    torch.serialization.add_safe_globals(_safe_globals())
    register_backend('local', AtomicLocalBackend, force=True, prefixes='')
    _REGISTERED = True


def atomic_write_bytes(data: bytes, filepath: Union[str, Path]) -> None:
    """Write ``data`` to ``filepath`` so that readers see either the old file or the whole new one."""
    filepath = os.fspath(filepath)
    folder = osp.dirname(osp.abspath(filepath))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + osp.basename(filepath) + '.', suffix='.tmp', dir=folder)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filepath)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend with atomic ``put``/``put_text`` (see module docstring)."""

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        atomic_write_bytes(obj, filepath)

    def put_text(self, obj: str, filepath: Union[str, Path], encoding: str = 'utf-8') -> None:
        atomic_write_bytes(obj.encode(encoding), filepath)
