"""CPU-only training tuning, off until :func:`apply` turns it on (``tools/train.py`` and the pre-training benchmark
call it when they train on the CPU; importing this module changes nothing).

:func:`apply` turns on two things, each measured on the CPU (docs/benchmarks.md, "Speed levers" and "Host
memory"):

* **Linear products by oneDNN** (:func:`linear`, :func:`linear_module`). PyTorch sends a float32 ``F.linear`` on
  the CPU to MKL's ``sgemm``. oneDNN, which ships in the same wheel (``torch.ops.mkldnn._linear_pointwise``), was
  faster for the forward products and the input gradients (``grad @ W``, read through a transposed view of ``W``,
  no copy) of the ViT-S layers, and for the forward product of the 65536-way prototype layer. MKL stays where it
  was the faster of the two (the weight gradient, the prototype layer's input gradient). Everything else goes to
  ``F.linear`` unchanged: other devices and dtypes, CPU autocast (``F.linear`` is where autocast casts), code being
  traced by ``torch.compile``, empty inputs, and every call before :func:`apply` or when the environment sets
  ``FAST_LINEAR=0`` (how the benchmark measures the change). Values and first-order gradients equal ``F.linear``'s
  up to float rounding (``tests/test_common/test_fast_linear.py``).
* **Freed host memory kept for reuse** (:func:`keep_freed_host_memory`). PyTorch's CPU allocator takes every
  tensor from ``malloc`` and hands it back with ``free``; glibc serves a request above its mmap threshold (at most
  32 MiB) with a fresh ``mmap``, returns it to the kernel on ``free`` and trims the top of its heap. A pre-training
  step allocates and frees the same large tensors every step (the ``(tokens, 65536)`` prototype logits alone are
  about 140 MiB), so every step page-faults them in again and the kernel zeroes each page. Keeping them costs a
  higher resident set at the heap's high-water mark. Forked children (the data loader's workers) go back to
  glibc's defaults: their allocations are not the step's.
"""
import ctypes
import ctypes.util
import os
import sys
from typing import Optional

import torch
import torch.nn.functional as F
from torch.autograd import forward_ad
from torch.nn.modules import module as torch_module
from torch.utils import flop_counter

# oneDNN keeps a primitive (and ideep a computation) per input shape in two caches, with buffers that outlive the
# call. The prototype layer's row count changes every step, so the caches fill with entries that pin freed memory;
# with freed memory kept for reuse the heap grew with every new shape (docs/benchmarks.md, "Host memory"). Without
# the caches, memory stays flat and the step measured no slower. Read when oneDNN creates its first primitive, so
# :func:`apply` sets them before it runs any oneDNN op; a value already in the environment wins.
ONEDNN_CACHE_ENV = {'ONEDNN_PRIMITIVE_CACHE_CAPACITY': '0', 'LRU_CACHE_CAPACITY': '1'}

# mallopt(3) parameters (malloc.h) and glibc's defaults for them
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
GLIBC_DEFAULTS = {M_TRIM_THRESHOLD: 128 * 1024, M_MMAP_MAX: 65536}

# The environment form of keep_freed_host_memory, for a process started by someone else (glibc reads it at
# start-up; the benchmark gives it to the reference).
KEEP_FREED_ENV = {'MALLOC_MMAP_MAX_': '0', 'MALLOC_TRIM_THRESHOLD_': str(2 ** 62)}

# --host-memory of tools/train.py and the benchmark: 'keep' applies keep_freed_host_memory on a CPU run,
# 'release' leaves the C library's defaults.
HOST_MEMORY_CHOICES = ('keep', 'release')

_ONEDNN_LINEAR = None  # the oneDNN linear op once apply() found it usable
_host_memory_kept = False
_at_fork_registered = False
_flop_formula_registered = False
_functorch_transforms_active = getattr(torch._C, '_are_functorch_transforms_active', lambda: False)


def apply(host_memory: str = 'keep', onednn_linear: bool = True) -> dict:
    """Turn the CPU tuning on for this process; call it before the model and the data exist. Returns what is in
    effect: ``dict(host_memory='keep'|'release', onednn_linear=bool)``.

    ``host_memory``: one of :data:`HOST_MEMORY_CHOICES`. ``onednn_linear``: :func:`linear` by oneDNN (also off
    under ``FAST_LINEAR=0`` or where the op is missing).
    """
    global _ONEDNN_LINEAR
    if host_memory not in HOST_MEMORY_CHOICES:
        raise ValueError(f'host memory must be one of {HOST_MEMORY_CHOICES}, got {host_memory!r}')
    kept = host_memory == 'keep' and keep_freed_host_memory()
    if torch.backends.mkldnn.is_available():
        # set also when the products stay off, so that switching them off changes nothing else
        for name, value in ONEDNN_CACHE_ENV.items():
            os.environ.setdefault(name, value)
    _ONEDNN_LINEAR = _onednn_op() if onednn_linear and os.environ.get('FAST_LINEAR', '1') != '0' else None
    if _ONEDNN_LINEAR is not None:
        register_flop_formula()
    return dict(host_memory='keep' if kept else 'release', onednn_linear=_ONEDNN_LINEAR is not None)


def register_flop_formula() -> None:
    """Count the oneDNN linear op in ``torch.utils.flop_counter`` (``FlopCounterMode``, the benchmark's profiled
    FLOPs) as it counts ``aten.addmm``; :func:`apply` calls it when it turns the op on."""
    global _flop_formula_registered
    if _flop_formula_registered:
        return
    op = _onednn_op()
    if op is not None and op not in flop_counter.flop_registry:
        flop_counter.register_flop_formula(op)(_onednn_linear_flop)
    _flop_formula_registered = True


def _onednn_op():
    """The oneDNN linear op, or None where it is missing or fails a one-element product."""
    if not torch.backends.mkldnn.is_available():
        return None
    op = getattr(getattr(torch.ops, 'mkldnn', None), '_linear_pointwise', None)  # None in a build without it
    if op is None:
        return None
    try:
        op(torch.ones(1, 1, device='cpu'), torch.ones(1, 1, device='cpu'), None, 'none', [], '')
    except RuntimeError:  # e.g. a CPU or build whose oneDNN cannot run it
        return None
    return op


# linear products ----------------------------------------------------------------------------------------------


def _onednn_linear_flop(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
    """2 FLOPs per multiply-add, as ``torch.utils.flop_counter`` counts ``aten.addmm``. ``FlopCounterMode`` passes
    the output's shape (right for every overload); a profiler's recorded inputs (no output) are the default
    overload's ``(x, weight, ...)``."""
    outputs = 1
    for size in (out_shape if out_shape is not None else [*x_shape[:-1], w_shape[0]]):
        outputs *= size
    return 2 * outputs * x_shape[-1]


def _onednn(x2d: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """``x2d @ weight.T + bias`` by oneDNN; ``weight`` may be a strided view (e.g. a transpose)."""
    return _ONEDNN_LINEAR(x2d, weight, bias, 'none', [], '')


class _OneDNNLinear(torch.autograd.Function):
    """The products in the order and by the library that measured fastest (docs/benchmarks.md):

    * forward ``x @ W.T``: oneDNN;
    * input gradient ``grad @ W``: oneDNN, except for a layer much wider than its input (the prototype layer),
      where MKL's ``mm`` was faster;
    * weight gradient: MKL's ``mm``, computed as the product whose result has more rows than columns
      (``grad.T @ x`` or ``(x.T @ grad).T``), which ran faster than the other orientation in the profiled step;
    * bias gradient: a sum over the rows.
    """

    @staticmethod
    def forward(ctx, x2d: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        ctx.save_for_backward(x2d, weight)
        ctx.has_bias = bias is not None
        return _onednn(x2d, weight, bias)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad2d: torch.Tensor):
        x2d, weight = ctx.saved_tensors
        out_features, in_features = weight.shape
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            wide = out_features > 8 * in_features
            grad_x = grad2d.mm(weight) if wide else _onednn(grad2d, weight.t(), None)
        if ctx.needs_input_grad[1]:
            # contiguous: a transposed gradient makes the ops after it (LayerScale's product, AccumulateGrad)
            # strided and several times slower than this one copy
            grad_w = grad2d.t().mm(x2d) if out_features >= in_features else x2d.t().mm(grad2d).t().contiguous()
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad2d.sum(0)
        return grad_x, grad_w, grad_b


def plain_reverse_mode() -> bool:
    """Whether a first-order custom ``autograd.Function`` (no ``jvp``, no vmap rule) may run here: no forward-mode
    AD, no ``torch.func`` transform, and not while ``torch.compile`` traces."""
    return (not torch.compiler.is_compiling() and forward_ad._current_level < 0
            and not _functorch_transforms_active())


def uses_onednn(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> bool:
    """Whether :func:`linear` takes the oneDNN path for these arguments: applied, float32 CPU tensors of the usual
    shapes, first-order reverse-mode autograd only (no forward-mode AD, no ``torch.func`` transform, no autocast,
    not while ``torch.compile`` traces)."""
    return (_ONEDNN_LINEAR is not None and x.device.type == 'cpu' and x.dtype == torch.float32
            and weight.dtype == torch.float32 and (bias is None or bias.dtype == torch.float32)
            and x.dim() >= 2 and x.numel() > 0 and weight.dim() == 2 and weight.shape[0] > 0
            and (bias is None or bias.shape == weight.shape[:1])
            and not torch.is_autocast_enabled('cpu') and plain_reverse_mode())


def linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``, by oneDNN where :func:`uses_onednn` says so.

    The oneDNN path supports first-order gradients only (``create_graph`` double backward needs it off)."""
    if not uses_onednn(x, weight, bias):
        return F.linear(x, weight, bias)
    x2d = x.reshape(-1, x.shape[-1])
    if not torch.is_grad_enabled() or not (x.requires_grad or weight.requires_grad
                                           or (bias is not None and bias.requires_grad)):
        out2d = _onednn(x2d, weight, bias)
    else:
        out2d = _OneDNNLinear.apply(x2d, weight, bias)
    return out2d.view(*x.shape[:-1], weight.shape[0])  # a view outside the Function: in-place ops on it work


def watched(module: torch.nn.Module) -> bool:
    """Whether a forward or backward hook, the module's own or a global one, would see ``module`` run."""
    return bool(module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
                or module._backward_pre_hooks or torch_module._global_forward_hooks
                or torch_module._global_forward_pre_hooks or torch_module._global_backward_hooks
                or torch_module._global_backward_pre_hooks)


def _plain_linear_forwards() -> tuple:
    """``forward`` methods that compute exactly ``F.linear(x, weight, bias)``: torch's, and mmcv's ``Linear``
    wrapper (which mmcv's FFN builds), whose own code only handles empty inputs on torch < 1.6."""
    forwards = [torch.nn.Linear.forward]
    try:
        from mmcv.cnn.bricks.wrappers import Linear as MMCVLinear
        forwards.append(MMCVLinear.forward)
    except ImportError:
        pass
    return tuple(forwards)


_PLAIN_LINEAR_FORWARDS = _plain_linear_forwards()


def linear_module(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)``, through :func:`linear` for an ``nn.Linear`` (also a weight-normalised one or mmcv's wrapper)
    and for the ``nn.Linear`` children of an ``nn.Sequential``. A module whose class overrides ``forward``
    otherwise, or that a hook watches, runs its own forward."""
    if watched(module):
        return module(x)
    if isinstance(module, torch.nn.Linear) and type(module).forward in _PLAIN_LINEAR_FORWARDS:
        return linear(x, module.weight, module.bias)
    if isinstance(module, torch.nn.Sequential) and type(module).forward is torch.nn.Sequential.forward:
        for child in module:
            x = linear_module(child, x)
        return x
    return module(x)


# host memory --------------------------------------------------------------------------------------------------


def _mallopt():
    """glibc's ``mallopt``, or None (not Linux, or a C library without it, e.g. musl)."""
    if not sys.platform.startswith('linux'):
        return None
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6').mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt


def _release_host_memory() -> None:
    """glibc's default mmap and trim settings again (in a forked child: a data loader worker)."""
    global _host_memory_kept
    mallopt = _mallopt()
    if mallopt is not None and _host_memory_kept:
        for param, value in GLIBC_DEFAULTS.items():
            mallopt(param, value)
    _host_memory_kept = False


def keep_freed_host_memory() -> bool:
    """Ask glibc's malloc to serve every request from its heap (no ``mmap``) and never trim it, in this process
    (processes forked later start from glibc's defaults again).

    Affects allocations made after the call. Returns True when applied, False where there is nothing to apply (not
    Linux, or a C library other than glibc): a no-op there.
    """
    global _host_memory_kept, _at_fork_registered
    if _host_memory_kept:
        return True
    mallopt = _mallopt()
    if mallopt is None:
        return False
    # mallopt returns 1 on success; M_TRIM_THRESHOLD -1 means "never trim" (mallopt(3)).
    _host_memory_kept = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, -1))
    if _host_memory_kept and not _at_fork_registered:
        os.register_at_fork(after_in_child=_release_host_memory)
        _at_fork_registered = True
    return _host_memory_kept
