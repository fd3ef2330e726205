"""Host (CPU) memory allocation of training processes: keep freed memory for reuse.

PyTorch's CPU allocator takes every tensor from ``malloc`` and hands it back with ``free``. glibc serves a
request above its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and returns it to the kernel on
``free``, and trims the top of its heap once it is free. A pre-training step allocates and frees the same
large tensors every step (the ``(tokens, 65536)`` prototype logits alone are about 140 MiB), so every step
page-faults them in again and the kernel zeroes each page, a measurable share of the step (figures in
docs/benchmarks.md, "Host memory"). :func:`keep_freed_host_memory` makes glibc take every allocation from its heap and
never give freed memory back, so after the first step the same memory is reused without faults. The cost is
a higher resident set at the heap's high-water mark (freed blocks stay mapped; measured in
docs/benchmarks.md).

The same effect without code: ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=<large>`` in the environment (how
the benchmark applies it to a process it does not own).
"""
import ctypes
import ctypes.util
import sys

# mallopt(3) parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4

# The environment form, for a process started by someone else (glibc reads it at start-up).
KEEP_FREED_ENV = {'MALLOC_MMAP_MAX_': '0', 'MALLOC_TRIM_THRESHOLD_': str(2 ** 62)}

# What tools/train.py and the benchmark offer: 'keep' (the default) applies keep_freed_host_memory, 'release'
# leaves the C library's defaults.
HOST_MEMORY_CHOICES = ('keep', 'release')

_applied = False


def keep_freed_host_memory() -> bool:
    """Ask glibc's malloc to serve every request from its heap (no ``mmap``) and never trim it.

    Affects allocations made after the call (call it before building the model). Returns True when applied,
    False where there is nothing to apply (not Linux, or a C library other than glibc): a no-op there.
    """
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith('linux'):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; M_TRIM_THRESHOLD -1 means "never trim" (mallopt(3)).
    _applied = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, -1))
    return _applied


def apply_host_memory(choice: str) -> str:
    """Apply a ``--host-memory`` choice (:data:`HOST_MEMORY_CHOICES`); returns the setting in effect ('keep' only
    where :func:`keep_freed_host_memory` applied)."""
    if choice not in HOST_MEMORY_CHOICES:
        raise ValueError(f'host memory must be one of {HOST_MEMORY_CHOICES}, got {choice!r}')
    return 'keep' if choice == 'keep' and keep_freed_host_memory() else 'release'
