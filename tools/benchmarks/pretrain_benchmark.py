"""Time the real pre-training step (``model.train_step``) of any pre-training config on synthetic data, count
its FLOPs, and compare it with the official DINOv2 step in paired, alternating runs.

    python tools/benchmarks/pretrain_benchmark.py CONFIG [CONFIG ...] [--arch ViT-S] [--batch-size 8]
        [--warmup 2] [--steps 7] [--rounds 3] [--threads 2] [--device cpu|cuda] [--amp none|bf16|fp16]
        [--reference DINOV2_DIR [--reference-drop-path 0.1 0.3]] [--cfg-options KEY=VALUE ...] [--out bench.json]

Every run (one config, or the reference at one drop-path rate) is a fresh process, so its peak memory
(``ru_maxrss``; on CUDA also the allocator's peak) is its own. The runs alternate: round 1 runs every entry
once, round 2 again, ... Ratios are taken within a round (ours / reference of that round) and their median
is reported, so slow phases of a shared machine hit both sides of a pair.

What one of our runs does:
  * builds the config's model and optimiser wrapper (mmengine's ``build_optim_wrapper`` with the config's
    constructor; ``AmpOptimWrapper`` becomes fp32 ``OptimWrapper`` with ``--amp none``), ``--arch`` sets the
    backbone to a size of ``VIT_ARCHS`` (and the necks' input width to match);
  * writes random-noise 500 x 375 JPEGs (synthetic: this measures speed, not accuracy) to a temporary folder
    and runs the config's own train pipeline and collate function on them, whatever the dataset type was
    (the dataset becomes a ``CustomDataset`` over that folder); the batches are built before timing, as the
    reference driver does;
  * times ``model.train_step(batch, optim_wrapper)`` + ``.item()`` of the logged values, per step, with a
    split into data preprocessor, forward (the rest), backward, optimiser step and teacher EMA
    (instrumented by wrapping those calls, not re-implemented);
  * counts the FLOPs of one more ``train_step`` with ``torch.utils.flop_counter.FlopCounterMode``: every
    matmul / linear / convolution / attention (SDPA) of the student forward, the teacher forward and the
    backward, as torch's counter defines them (a multiply-add = 2 FLOPs); element-wise work (norms, GELU,
    softmax outside SDPA, the optimiser, the EMA) is not counted, as usual for model FLOPs utilisation;
  * probes the machine's matmul peak in the same process (square GEMMs, fp32 on CPU, bf16 on CUDA, the best
    of several) and reports MFU = (counted FLOPs per step / median step time) / peak.

The reference (``--reference DIR``): ``DIR/run_step.py`` with the DINOv2 source in ``DIR/src`` and a Python in
``DIR/venv`` (or ``--reference-python``); see docs/benchmarks.md. DINOv2's code is only run, never imported
into this process or copied. Its timed span is the same: a pre-built batch through forward, backward,
gradient clipping, AdamW, EMA and ``.item()``. DINO's photometric augmentation, where a config runs it in the
data preprocessor (``photometric``), is applied on the CPU to our pre-built batches, timed apart
(``photometric_s_per_batch``), as the reference's ``DataAugmentationDINO`` is part of building its batches.

The loader (``--pipeline``): per image, the process CPU time (one thread) of the data-loader side, from the
file to the whole multi-crop output of one image: ``ours`` is the config's train pipeline as it is (with
``PosFieldMultiCrop(photometric=False)`` the workers decode, crop, resize and flip), ``ours-worker-photometric``
the same pipeline with the photometric augmentation in the worker (``photometric=True``), and, with
``--reference DIR``, ``dinov2``: PIL decoding and DINOv2's ``DataAugmentationDINO`` from ``DIR/src`` with the
config's crop numbers, sizes and scales. Each run is a fresh process (with ``--reference-python`` or
``DIR/venv/bin/python`` for DINOv2 when given or present, else this Python); the runs alternate per round and
the ratios (CPU time per image of each run over each other's) are within-round medians.

    python tools/benchmarks/pretrain_benchmark.py CONFIG --pipeline [--reference DINOV2_DIR]
        [--images FOLDER] [--num-images 64] [--warmup 2] [--rounds 3] [--out loader.json]
"""
import argparse
import json
import os
import os.path as osp
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from projects.common import cpu_tuning  # noqa: E402
from projects.common.cpu_tuning import HOST_MEMORY_CHOICES, KEEP_FREED_ENV  # noqa: E402

PHASES = ('preprocess', 'forward', 'backward', 'optimizer', 'ema')
PIPELINE_KINDS = ('ours', 'ours-worker-photometric', 'dinov2')
# Runs the reference driver (argv[1]) as __main__ would, with the first (warm-up) step's forward_backward under
# FlopCounterMode and a GEMM peak probe at the end, so the reference gets FLOPs and MFU counted as ours are.
REFERENCE_WRAPPER = r"""
import importlib.util, json, sys, time
import torch
from torch.utils.flop_counter import FlopCounterMode
driver = sys.argv[1]
sys.argv = [driver] + sys.argv[2:]
spec = importlib.util.spec_from_file_location('run_step', driver)
run_step = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_step)
from dinov2.train.ssl_meta_arch import SSLMetaArch
original, counted = SSLMetaArch.forward_backward, []
def forward_backward(self, *args, **kwargs):
    if counted:
        return original(self, *args, **kwargs)
    with FlopCounterMode(display=False) as counter:
        out = original(self, *args, **kwargs)
    counted.append(int(counter.get_total_flops()))
    return out
SSLMetaArch.forward_backward = forward_backward
run_step.main()
a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
best, start = float('inf'), time.perf_counter()
while time.perf_counter() - start < 1.5:
    t0 = time.perf_counter(); torch.mm(a, b); best = min(best, time.perf_counter() - t0)
print('FLOPS ' + json.dumps(dict(flops_per_step=counted[0], peak=2.0 * 1024 ** 3 / best)))
"""
REFERENCE_SETTINGS = ('student.arch=vit_small', 'compute_precision.grad_scaler=false', 'student.block_chunks=0')


# ----------------------------------------------------------------------------------------------- arguments
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('configs', nargs='+', metavar='CONFIG', help='pre-training config(s)')
    p.add_argument('--arch', help="backbone size from VIT_ARCHS ('ViT-S', 'ViT-B', ...); default: the config's")
    p.add_argument('--batch-size', type=int, default=None, help="images per step (default: the config's)")
    p.add_argument('--warmup', type=int, default=2, help='untimed steps first')
    p.add_argument('--steps', type=int, default=7, help='timed steps per run (the median is reported)')
    p.add_argument('--rounds', type=int, default=1, help='alternating rounds over all entries')
    p.add_argument('--threads', type=int, default=None, help='torch intra-op threads in every run')
    p.add_argument('--device', default=None, help='cpu or cuda (default: cuda when available)')
    p.add_argument('--amp', choices=['none', 'bf16', 'fp16'], default='none',
                   help='mixed precision (AmpOptimWrapper); none = fp32 OptimWrapper')
    p.add_argument('--reference', metavar='DIR', help='directory with run_step.py, src/ (DINOv2) and venv/')
    p.add_argument('--reference-python', help='Python for the reference (default: DIR/venv/bin/python)')
    p.add_argument('--reference-drop-path', type=float, nargs='+', default=[0.1, 0.3],
                   help='one reference entry per drop-path rate (DINOv2 default: 0.3)')
    p.add_argument('--host-memory', choices=HOST_MEMORY_CHOICES, default='keep',
                   help="our runs' host allocator, as tools/train.py sets it: keep = freed memory is kept for "
                   'reuse (projects.common.cpu_tuning, applied on --device cpu only), release = glibc defaults')
    p.add_argument('--reference-host-memory', choices=HOST_MEMORY_CHOICES, nargs='+', default=['release'],
                   help='one reference entry per setting: release = the reference as it ships; keep = the same '
                   'allocator setting as ours (through the environment)')
    p.add_argument('--no-flops', action='store_true', help='skip the FLOP count and the GEMM peak probe')
    p.add_argument('--profile', metavar='FILE', help='profile one more train_step of each config with '
                   'torch.profiler; write the op table (self time) to FILE (config name appended)')
    p.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                   help='config overrides for our runs (mmengine syntax)')
    p.add_argument('--out', help='write all runs and the ratios as JSON here')
    p.add_argument('--pipeline', action='store_true',
                   help='time the loader side (CPU per image, one thread) instead of the training step')
    p.add_argument('--images', metavar='FOLDER', help='--pipeline: the images (default: synthetic 500x375 noise)')
    p.add_argument('--num-images', type=int, default=64, help='--pipeline: timed images per run (after --warmup)')
    p.add_argument('--child', action='store_true', help=argparse.SUPPRESS)  # one run of ours, JSON last line
    p.add_argument('--pipeline-child', choices=PIPELINE_KINDS, help=argparse.SUPPRESS)
    p.add_argument('--multicrop', type=json.loads, help=argparse.SUPPRESS)  # the crop settings, for dinov2
    p.add_argument('--data-root', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.pipeline:
        if len(args.configs) != 1:
            p.error(f'--pipeline takes one config (its train pipeline), got {len(args.configs)}')
        if args.num_images < 1 or args.warmup < 0:
            p.error('--pipeline needs --num-images >= 1 and --warmup >= 0')
        return args
    args.device = args.device or ('cuda' if _cuda_available() else 'cpu')
    if args.amp != 'none' and not args.device.startswith('cuda'):
        p.error(f'--amp {args.amp} needs --device cuda (mmengine\'s AmpOptimWrapper is CUDA-only); use --amp none')
    if args.reference and not args.no_flops and args.warmup < 1:
        p.error('the reference FLOPs are counted on its first warm-up step: use --warmup >= 1 (or --no-flops)')
    if args.reference and args.device != 'cpu':
        p.error('--reference drives the CPU reference step only; use --device cpu')
    return args


def _cuda_available() -> bool:
    import torch
    return torch.cuda.is_available()


def _parse_cfg_options(options: List[str]) -> dict:
    from mmengine.config import DictAction
    ns = argparse.Namespace()
    DictAction(option_strings=['--cfg-options'], dest='cfg_options')(None, ns, options)
    return ns.cfg_options or {}


# ----------------------------------------------------------------------------------------------- data
def make_images(folder: str, n: int, size=(500, 375)) -> str:
    """``n`` random-noise JPEGs (the reference driver's images: 500 x 375 uniform noise)."""
    import numpy as np
    from PIL import Image
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        img = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(img).save(osp.join(folder, f'synthetic_{i:04d}.jpg'), quality=90)
    return folder


def train_pipeline_of(dataset_cfg: dict, where: str = 'train_dataloader.dataset') -> list:
    """The pipeline of a dataset config, looking through wrappers (``dataset=`` / ``datasets=[...]``)."""
    while 'pipeline' not in dataset_cfg:
        if 'dataset' in dataset_cfg:
            dataset_cfg, where = dataset_cfg['dataset'], where + '.dataset'
        elif dataset_cfg.get('datasets'):
            dataset_cfg, where = dataset_cfg['datasets'][0], where + '.datasets[0]'
        else:
            raise KeyError(f'{where} has no pipeline (nor a wrapped dataset with one); keys: {sorted(dataset_cfg)}')
    return dataset_cfg['pipeline']


def synthetic_dataset_cfg(cfg, image_folder: str) -> dict:
    """The config's train pipeline over a folder of synthetic images, whatever the dataset type was."""
    return dict(type='CustomDataset', data_root=image_folder, with_label=False,
                pipeline=train_pipeline_of(cfg.train_dataloader.dataset))


# ----------------------------------------------------------------------------------------------- config
def prepare_config(cfg, arch: Optional[str] = None, amp: str = 'none', batch_size: Optional[int] = None):
    """Apply --arch / --amp / --batch-size to a loaded pre-training config (in place) and return it."""
    from projects.posfield.models.utils.archs import vit_arch
    if arch:
        dims = vit_arch(arch)
        cfg.model.backbone.arch = dims
        for neck in ('neck', 'patch_neck'):
            if cfg.model.get(neck) and 'in_channels' in cfg.model[neck]:
                cfg.model[neck].in_channels = dims['embed_dims']
    ow = cfg.optim_wrapper
    if amp == 'none':
        if str(ow.get('type', 'OptimWrapper')).split('.')[-1] == 'AmpOptimWrapper':
            ow.type = 'OptimWrapper'
            for key in ('loss_scale', 'dtype'):
                ow.pop(key, None)
    else:
        ow.type = 'AmpOptimWrapper'
        ow.dtype = dict(bf16='bfloat16', fp16='float16')[amp]
        if amp == 'bf16':
            ow.pop('loss_scale', None)  # bf16 needs no loss scaling
    if batch_size:
        cfg.train_dataloader.batch_size = batch_size
    return cfg


def build_batches(cfg, n_batches: int, batch_size: int) -> List[dict]:
    """``n_batches`` collated batches from the config's train dataset and collate function."""
    from mmengine.dataset import COLLATE_FUNCTIONS  # noqa: F401  (registers default_collate & co)
    from mmengine.registry import DATASETS, FUNCTIONS
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    collate_cfg = dict(cfg.train_dataloader.get('collate_fn') or dict(type='pseudo_collate'))
    collate = FUNCTIONS.get(collate_cfg.pop('type'))
    batches, cursor = [], 0
    for _ in range(n_batches):
        samples = []
        while len(samples) < batch_size:
            if cursor >= 50 * batch_size * n_batches:
                raise RuntimeError('the pipeline skipped (returned None for) almost every synthetic image')
            item = dataset[cursor % len(dataset)]
            cursor += 1
            if item is not None:
                samples.append(item)
        batches.append(collate(samples, **collate_cfg))
    return batches


# ----------------------------------------------------------------------------------------------- FLOPs & peak
def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of ``fn()`` as ``torch.utils.flop_counter.FlopCounterMode`` counts them (matmul, conv, SDPA)."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def matmul_peak_flops(device, dtype=None, size: Optional[int] = None, seconds: float = 1.5) -> Dict[str, float]:
    """Best achieved FLOP/s of a square GEMM in this process (fp32 on CPU, bf16 on CUDA by default)."""
    import torch
    device = torch.device(device)
    dtype = dtype or (torch.bfloat16 if device.type == 'cuda' else torch.float32)
    size = size or (8192 if device.type == 'cuda' else 1024)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)

    def sync():
        if device.type == 'cuda':
            torch.cuda.synchronize(device)

    torch.mm(a, b)
    sync()
    best, start = float('inf'), time.perf_counter()
    while time.perf_counter() - start < seconds or best == float('inf'):
        t0 = time.perf_counter()
        for _ in range(4 if device.type == 'cuda' else 1):
            torch.mm(a, b)
        sync()
        best = min(best, (time.perf_counter() - t0) / (4 if device.type == 'cuda' else 1))
    return dict(flops_per_s=2.0 * size ** 3 / best, gemm_size=size, dtype=str(dtype).replace('torch.', ''))


# ----------------------------------------------------------------------------------------------- one run of ours
def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy (Linux /proc/stat; 0 elsewhere)."""
    try:
        with open('/proc/stat') as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq = (v + [0] * 7)[:7]
    return (user + nice + system + irq + softirq) / os.sysconf('SC_CLK_TCK')


class PhaseTimer:
    """Accumulates wall time of wrapped calls (instance attributes shadow the methods; nothing re-implemented)."""

    def __init__(self, sync):
        self.sync, self.times = sync, {}

    def wrap(self, obj, attr: str, phase: str):
        original = getattr(obj, attr)

        def timed(*a, **kw):
            self.sync()
            t0 = time.perf_counter()
            out = original(*a, **kw)
            self.sync()
            self.times[phase] = self.times.get(phase, 0.0) + time.perf_counter() - t0
            return out
        setattr(obj, attr, timed)


def profiled_flops(name: str, shapes) -> Optional[int]:
    """FLOPs of one profiled call from its recorded input shapes, by the formula ``FlopCounterMode`` uses for the
    op (``torch.utils.flop_counter``: ``mm``, ``addmm``, ``bmm``, ...; the oneDNN linear op registers its own in
    ``projects.common.cpu_tuning``); None for an op without one."""
    import torch
    from torch.utils import flop_counter

    cpu_tuning.register_flop_formula()
    namespace, _, op = name.partition('::')
    try:
        formula = flop_counter.flop_registry.get(getattr(getattr(torch.ops, namespace), op))
        return None if formula is None else int(formula(*shapes))
    except (AttributeError, RuntimeError, IndexError, TypeError, ValueError):  # no such op; shapes that do not fit
        return None


def profile_step(step: Callable[[], object], path: str, cuda: bool, rows: int = 40) -> str:
    """Run ``step()`` under torch.profiler; write the per-op table sorted by self time to ``path``, then the
    heaviest (op, input shapes) pairs with the achieved GFLOP/s of each matmul shape."""
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities, record_shapes=True) as prof:
        step()
    key = 'self_cuda_time_total' if cuda else 'self_cpu_time_total'
    table = prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=60)
    by_shape = sorted(prof.key_averages(group_by_input_shape=True), key=lambda e: -getattr(e, key))
    total_us = sum(getattr(e, key) for e in by_shape) or 1.0
    lines = [f'{"self ms":>9} {"share":>6} {"calls":>5} {"GFLOP/s":>8}  op  input shapes']
    for e in by_shape[:5 * rows]:
        self_us = getattr(e, key)
        flops = profiled_flops(e.key, e.input_shapes)
        rate = f'{flops * e.count / self_us / 1e3:8.1f}' if flops and self_us > 0 else f'{"":8}'
        lines.append(f'{self_us / 1e3:9.1f} {100 * self_us / total_us:5.1f}% {e.count:5d} {rate}  {e.key}  '
                     f'{str(e.input_shapes)[:100]}')
    with open(path, 'w') as f:
        f.write(table + '\n\nBy op and input shapes (GFLOP/s where torch\'s FLOP counter has a formula for the op, '
                '2 FLOPs per multiply-add):\n')
        f.write('\n'.join(lines) + '\n')
    return path


def measure(config: str, arch=None, batch_size=None, warmup=2, steps=7, device='cpu', amp='none',
            threads=None, data_root=None, cfg_options=None, flops=True, profile=None) -> dict:
    """One run of ours in this process; see the module docstring."""
    import torch
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    from projects.common.runner_setup import load_config
    if threads:
        torch.set_num_threads(threads)
    cfg = prepare_config(load_config(config, cfg_options), arch, amp, batch_size)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    if cfg.get('custom_imports'):
        from mmengine.utils import import_modules_from_strings
        import_modules_from_strings(**cfg.custom_imports)
    batch_size = cfg.train_dataloader.batch_size
    tmp = None
    if data_root is None:
        tmp = tempfile.TemporaryDirectory(prefix='bench_imgs_')
        data_root = make_images(tmp.name, n=min(batch_size * (warmup + steps + 1), 96))
    cfg.train_dataloader.dataset = synthetic_dataset_cfg(cfg, data_root)
    torch.manual_seed(0)
    batches = build_batches(cfg, warmup + steps + (1 if flops else 0) + (1 if profile else 0), batch_size)
    if tmp is not None:
        tmp.cleanup()

    dev = torch.device(device)
    model = MODELS.build(cfg.model).to(dev)
    model.init_weights()
    if hasattr(model, 'set_train_length'):  # schedules of PosFieldSSL outside a Runner
        model.set_train_length(max_iters=100 * (warmup + steps + 1), iters_per_epoch=warmup + steps + 1)
    model.train()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)

    def sync():
        if dev.type == 'cuda':
            torch.cuda.synchronize(dev)

    photometric_s = []
    if getattr(model.data_preprocessor, 'photometric', None) is not None and dev.type == 'cpu':
        # on the CPU, part of building the batch, as DataAugmentationDINO is for the reference; on a GPU it stays in
        # the timed step, where it runs
        for batch in batches:
            t0 = time.perf_counter()
            batch['inputs'] = model.data_preprocessor.augment_views(batch['inputs'])
            photometric_s.append(time.perf_counter() - t0)
        model.data_preprocessor.photometric = None

    timer = PhaseTimer(sync)
    timer.wrap(model.data_preprocessor, 'forward', 'preprocess')
    timer.wrap(optim_wrapper, 'backward', 'backward')
    timer.wrap(optim_wrapper, 'step', 'optimizer')
    timer.wrap(optim_wrapper, 'zero_grad', 'optimizer')
    if hasattr(model, 'teacher') and hasattr(model.teacher, 'update'):
        timer.wrap(model.teacher, 'update', 'ema')
    if dev.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(dev)

    records = []
    for it in range(warmup + steps):
        timer.times = {}
        sync()
        faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        busy0, cpu0, t0 = machine_busy_s(), time.process_time(), time.perf_counter()
        log_vars = model.train_step(batches[it], optim_wrapper)
        values = {k: float(v) for k, v in log_vars.items()}  # the .item() a logger would do
        sync()
        wall = time.perf_counter() - t0
        foreign = max(machine_busy_s() - busy0 - (time.process_time() - cpu0), 0.0) / wall
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0
        if not all(v == v and abs(v) != float('inf') for v in values.values()):
            raise RuntimeError(f'{config}: non-finite logged value at step {it}: {values}')
        phases = dict(timer.times)
        phases['forward'] = wall - sum(phases.values())
        records.append(dict(it=it, warmup=it < warmup, wall=wall, phases=phases, loss=values.get('loss'),
                            foreign_cpu_frac=foreign, minor_faults=faults))
    timed = [r for r in records if not r['warmup']]
    step_s = statistics.median(r['wall'] for r in timed)
    phase_s = {k: statistics.median(r['phases'].get(k, 0.0) for r in timed) for k in PHASES}
    result = dict(
        kind='ours', name=osp.splitext(osp.basename(config))[0], config=config, device=str(dev), amp=amp,
        torch=torch.__version__, threads=torch.get_num_threads(), batch=batch_size,
        arch=cfg.model.backbone.get('arch'), drop_path=cfg.model.backbone.get('drop_path_rate'),
        warmup=warmup, steps=steps, step_s=[round(r['wall'], 4) for r in timed],
        median_s_per_step=step_s, images_per_s=batch_size / step_s, phases_s=phase_s,
        max_foreign_cpu_frac=max(r['foreign_cpu_frac'] for r in timed),
        minor_faults_per_step=statistics.median(r['minor_faults'] for r in timed),
        losses=[r['loss'] for r in records],
        data='synthetic random-noise 500x375 JPEGs' if tmp is not None else data_root)
    if photometric_s:
        result['photometric_s_per_batch'] = statistics.median(photometric_s[1:] or photometric_s)
    result['peak_rss_gib'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # before the count
    if dev.type == 'cuda':
        result['cuda_max_allocated_gib'] = torch.cuda.max_memory_allocated(dev) / 2 ** 30
    if profile:
        result['profile'] = profile_step(lambda: model.train_step(batches[warmup + steps], optim_wrapper),
                                         profile, dev.type == 'cuda')
    if flops:
        timer.times = {}
        step_flops = count_flops(lambda: model.train_step(batches[-1], optim_wrapper))
        peak = matmul_peak_flops(dev)
        achieved = step_flops / step_s
        result.update(flops_per_step=step_flops, flops_per_image=step_flops / batch_size,
                      achieved_flops_per_s=achieved, matmul_peak=peak, mfu=achieved / peak['flops_per_s'])
    return result


# ----------------------------------------------------------------------------------------------- the loader
def _multicrop_of(pipeline: list, config: str) -> dict:
    crops = [t for t in pipeline if isinstance(t, dict) and t.get('type') == 'PosFieldMultiCrop']
    if len(crops) != 1:
        raise SystemExit(f'--pipeline: {config} has {len(crops)} PosFieldMultiCrop transforms in its train '
                         'pipeline; expected one')
    return crops[0]


def image_files(folder: str) -> List[str]:
    exts = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')
    files = sorted(osp.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(exts))
    if not files:
        raise SystemExit(f'--images {folder}: no image files ({", ".join(exts)})')
    return files


def loader_cpu(kind: str, config: str, images: str, num_images: int, warmup: int,
               reference_src: Optional[str] = None, multicrop: Optional[dict] = None) -> dict:
    """One run of the loader side in this process: CPU seconds per image (one thread), the whole multi-crop
    output of each image, from its file."""
    import copy

    import cv2
    import torch
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    files = image_files(images)
    if kind == 'dinov2':
        from PIL import Image
        sys.path.insert(0, reference_src)
        from dinov2.data.augmentations import DataAugmentationDINO  # the reference's code, run as it ships
        crop = multicrop or {}  # our config's crop numbers, sizes and scales (read by the driver)
        augment = DataAugmentationDINO(
            crop.get('global_crops_scale', (0.32, 1.0)), crop.get('local_crops_scale', (0.05, 0.32)),
            crop.get('local_crops_number', 8), global_crops_size=crop.get('global_crops_size', 224),
            local_crops_size=crop.get('local_crops_size', 96))

        def load(path):  # DINOv2's decoder: PIL, converted to RGB
            with open(path, 'rb') as f:
                img = Image.open(f).convert('RGB')
            out = augment(img)
            return len(out['global_crops']) + len(out['local_crops'])
    else:
        from mmcv.transforms import Compose
        from mmengine.registry import init_default_scope

        from projects.common.runner_setup import load_config
        cfg = load_config(config)
        init_default_scope(cfg.get('default_scope', 'mmpretrain'))
        pipeline = copy.deepcopy(train_pipeline_of(cfg.train_dataloader.dataset))
        crop = _multicrop_of(pipeline, config)
        if kind == 'ours-worker-photometric':
            crop['photometric'] = True
        transform = Compose(pipeline)

        def load(path):
            out = transform(dict(img_path=path))
            if out is None:
                raise SystemExit(f'--pipeline: the pipeline skipped {path}')
            return len(out['inputs'])
    order = [files[i % len(files)] for i in range(warmup + num_images)]
    views = [load(path) for path in order[:warmup]]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    views = [load(path) for path in order[warmup:]]
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return dict(kind=kind, images=num_images, distinct_images=min(len(files), num_images), views_per_image=views[0],
                cpu_s_per_image=cpu / num_images, wall_s_per_image=wall / num_images,
                images_per_cpu_s=num_images / cpu, threads=1, data=images)


def run_pipeline_benchmark(args) -> dict:
    """Alternating rounds of the loader runs; ratios of CPU time per image within each round."""
    config = osp.abspath(args.configs[0])
    kinds = ['ours', 'ours-worker-photometric']
    if args.reference:
        src = osp.join(osp.abspath(args.reference), 'src')
        if not osp.isdir(osp.join(src, 'dinov2')):
            raise SystemExit(f'--reference {args.reference}: no DINOv2 source tree at {src} (docs/benchmarks.md)')
        kinds.append('dinov2')
    from projects.common.runner_setup import load_config
    crop = _multicrop_of(train_pipeline_of(load_config(config).train_dataloader.dataset), config)
    crop = {k: v for k, v in crop.items() if k.startswith(('global_crops', 'local_crops'))}
    tmp = None
    images = args.images
    if images is None:
        tmp = tempfile.TemporaryDirectory(prefix='bench_loader_imgs_')
        images = make_images(tmp.name, n=min(args.num_images, 64))
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''),
               OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    head = [osp.abspath(__file__), config, '--pipeline', '--images', osp.abspath(images), '--num-images',
            str(args.num_images), '--warmup', str(args.warmup)]
    venv_python = osp.join(osp.abspath(args.reference), 'venv', 'bin', 'python') if args.reference else None
    runs: Dict[str, List[dict]] = {}
    try:
        for rnd in range(args.rounds):
            for kind in kinds:
                python = sys.executable
                cmd_tail = ['--pipeline-child', kind]
                if kind == 'dinov2':
                    python = args.reference_python or (venv_python if osp.exists(venv_python) else sys.executable)
                    cmd_tail += ['--reference', osp.abspath(args.reference), '--multicrop', json.dumps(crop)]
                result = _run([python, *head, *cmd_tail], env, f'round {rnd + 1}/{args.rounds} {kind}')
                result['round'] = rnd
                runs.setdefault(kind, []).append(result)
                print(f"[bench]   {result['cpu_s_per_image'] * 1e3:.2f} ms CPU per image, "
                      f"{result['images_per_cpu_s']:.1f} img/s per core", flush=True)
    finally:
        if tmp is not None:
            tmp.cleanup()
    ratios = []
    for i, a in enumerate(kinds):
        for b in kinds[i + 1:]:
            pairs = list(zip(runs[a], runs[b]))
            ratios.append(dict(run=a, against=b, rounds=len(pairs), cpu_per_image_ratio=statistics.median(
                x['cpu_s_per_image'] / y['cpu_s_per_image'] for x, y in pairs)))
    print(f"\n{'run':<26} {'ms CPU/img (per round)':<32} {'img/s per core':>14}")
    for kind, rs in runs.items():
        per_round = ', '.join('%.2f' % (r['cpu_s_per_image'] * 1e3) for r in rs)
        print(f"{kind:<26} {per_round:<32} {statistics.median(r['images_per_cpu_s'] for r in rs):>14.1f}")
    for row in ratios:
        print(f"{row['run']} / {row['against']}: CPU per image x{row['cpu_per_image_ratio']:.3f} "
              '(median of within-round ratios)')
    record = dict(mode='pipeline', argv=list(args.argv), date=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
                  machine=machine_info(), config=config, images=args.images or 'synthetic random-noise 500x375 JPEGs',
                  runs=runs, ratios=ratios)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(record, f, indent=2)
        print(f'[bench] wrote {args.out}')
    return record


# ----------------------------------------------------------------------------------------------- the driver
def _run(cmd: List[str], env: dict, label: str) -> dict:
    shown = ['<FLOP-count wrapper>' if c == REFERENCE_WRAPPER else c for c in cmd]
    print(f'[bench] {label}: {" ".join(shown)}', flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f'[bench] {label} failed (exit {out.returncode}):\n{out.stdout[-2000:]}\n'
                         f'{out.stderr[-4000:]}')
    lines = [ln for ln in out.stdout.splitlines() if ln.strip()]
    tagged = {ln.split(' ', 1)[0]: json.loads(ln.split(' ', 1)[1]) for ln in lines
              if ln.startswith(('RESULT ', 'FLOPS '))}
    if 'RESULT' not in tagged:  # ours: the JSON is the last line
        return json.loads(lines[-1])
    result = tagged['RESULT']
    if 'FLOPS' in tagged:  # the reference, counted by REFERENCE_WRAPPER
        fl = tagged['FLOPS']
        achieved = fl['flops_per_step'] / result['median_s_per_step']
        result.update(flops_per_step=fl['flops_per_step'], flops_per_image=fl['flops_per_step'] / result['batch'],
                      achieved_flops_per_s=achieved, matmul_peak=dict(flops_per_s=fl['peak'], gemm_size=1024,
                                                                      dtype='float32'),
                      mfu=achieved / fl['peak'], flops_counted_on='the first warm-up step')
    return result


def entries(args) -> List[dict]:
    """What each round runs: our configs, then the reference at each drop-path rate."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    if args.threads:
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    out = []
    for config in args.configs:
        cmd = [sys.executable, osp.abspath(__file__), config, '--child', '--warmup', str(args.warmup),
               '--steps', str(args.steps), '--device', args.device, '--amp', args.amp,
               '--host-memory', args.host_memory]
        for flag, value in (('--arch', args.arch), ('--batch-size', args.batch_size), ('--threads', args.threads),
                            ('--data-root', args.data_root)):
            if value:
                cmd += [flag, str(value)]
        if args.no_flops:
            cmd.append('--no-flops')
        if args.profile:
            root, ext = osp.splitext(args.profile)
            cmd += ['--profile', f'{root}_{osp.splitext(osp.basename(config))[0]}{ext or ".txt"}']
        if args.cfg_options:
            cmd += ['--cfg-options', *args.cfg_options]
        out.append(dict(label=osp.splitext(osp.basename(config))[0], cmd=cmd, env=env, kind='ours'))
    if args.reference:
        ref = osp.abspath(args.reference)
        driver = osp.join(ref, 'run_step.py')
        python = args.reference_python or osp.join(ref, 'venv', 'bin', 'python')
        for path, what in ((driver, 'run_step.py'), (python, 'a Python (--reference-python)')):
            if not osp.exists(path):
                raise SystemExit(f'--reference {args.reference}: {what} not found at {path} (docs/benchmarks.md)')
        if args.arch and args.arch != 'ViT-S':
            raise SystemExit(f'--reference runs DINOv2 vit_small; --arch must be ViT-S, got {args.arch!r}')
        ref_env = dict(env, DINOV2_SRC=os.environ.get('DINOV2_SRC', osp.join(ref, 'src')))
        ref_env.pop('PYTHONPATH', None)
        for dp in args.reference_drop_path:
            for host_memory in args.reference_host_memory:
                label = f'dinov2-dp{dp:g}' + ('-keep-host-memory' if host_memory == 'keep' else '')
                head = [python, driver] if args.no_flops else [python, '-c', REFERENCE_WRAPPER, driver]
                cmd = [*head, '--name', label, '--warmup', str(args.warmup), '--steps', str(args.steps),
                       *REFERENCE_SETTINGS, f'train.batch_size_per_gpu={args.batch_size or 8}',
                       f'student.drop_path_rate={dp}']
                env_ = dict(ref_env, **(KEEP_FREED_ENV if host_memory == 'keep' else {}))
                out.append(dict(label=label, cmd=cmd, env=env_, kind='reference'))
    return out


def ratio_table(runs: Dict[str, List[dict]]) -> List[dict]:
    """Median over rounds of within-round ratios: each of ours against each reference entry, and (with no
    reference) each further config of ours against the first."""
    ours = [k for k, v in runs.items() if v[0]['kind'] == 'ours']
    refs = [k for k, v in runs.items() if v[0]['kind'] == 'reference']
    pairs = [(a, b) for a in ours for b in refs] if refs else [(a, ours[0]) for a in ours[1:]]
    rows = []
    for a, b in pairs:
        both = list(zip(runs[a], runs[b]))
        rows.append(dict(
            run=a, against=b, rounds=len(both),
            img_per_s_ratio=statistics.median(x['images_per_s'] / y['images_per_s'] for x, y in both),
            peak_rss_ratio=statistics.median(x['peak_rss_gib'] / y['peak_rss_gib'] for x, y in both)))
    return rows


def machine_info() -> dict:
    import platform
    model = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            model = next((ln.split(':', 1)[1].strip() for ln in f if ln.startswith('model name')), model)
    except OSError:
        pass
    info = dict(cpu=model, cpus=os.cpu_count(), platform=platform.platform())
    if _cuda_available():
        import torch
        info['gpu'] = torch.cuda.get_device_name(0)
    return info


def print_report(runs: Dict[str, List[dict]], ratios: List[dict]) -> None:
    print(f"\n{'run':<48} {'s/step':>7} {'img/s':>6} {'RSS GiB':>7} {'GFLOP/img':>9} {'GFLOP/s':>8} {'MFU':>6} "
          f"{'foreign':>7}  "
          + ' '.join(f'{k:>9}' for k in PHASES))
    for label, rs in runs.items():
        for r in rs:
            fl = (f"{r['flops_per_image'] / 1e9:>9.1f} {r['achieved_flops_per_s'] / 1e9:>8.1f} {r['mfu']:>6.3f}"
                  if 'mfu' in r else f"{'-':>9} {'-':>8} {'-':>6}")
            ph = ' '.join(f"{r['phases_s'][k]:>9.3f}" for k in PHASES) if 'phases_s' in r else ''
            cuda = f"  CUDA peak {r['cuda_max_allocated_gib']:.2f} GiB" if 'cuda_max_allocated_gib' in r else ''
            print(f"{label:<48} {r['median_s_per_step']:>7.3f} {r['images_per_s']:>6.3f} "
                  f"{r['peak_rss_gib']:>7.2f} {fl} {r.get('max_foreign_cpu_frac', float('nan')):>7.2f}  {ph}{cuda}")
    if ratios:
        print(f"\n{'run':<48} {'against':<48} {'img/s ratio':>11} {'peak RSS ratio':>14} "
              '(median of within-round ratios)')
        for row in ratios:
            print(f"{row['run']:<48} {row['against']:<48} {row['img_per_s_ratio']:>11.3f} "
                  f"{row['peak_rss_ratio']:>14.3f}")


def main(argv=None):
    args = parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    if args.pipeline_child:  # one loader run; the JSON is the last line
        src = osp.join(osp.abspath(args.reference), 'src') if args.reference else None
        print(json.dumps(loader_cpu(args.pipeline_child, args.configs[0], args.images, args.num_images, args.warmup,
                                    src, args.multicrop)))
        return None
    if args.pipeline:
        return run_pipeline_benchmark(args)
    cfg_options = _parse_cfg_options(args.cfg_options) if args.cfg_options else None
    if args.child:  # one run of ours; the JSON is the last line
        # before anything large is built, as train.py does: the CPU tuning where the run is on the CPU
        host_memory = (cpu_tuning.apply(host_memory=args.host_memory)['host_memory']
                       if args.device.split(':')[0] == 'cpu' else 'release')
        result = measure(args.configs[0], args.arch, args.batch_size, args.warmup, args.steps, args.device,
                         args.amp, args.threads, args.data_root, cfg_options, flops=not args.no_flops,
                         profile=args.profile)
        result['host_memory'] = host_memory
        print(json.dumps(result))
        return None
    runs: Dict[str, List[dict]] = {}
    for rnd in range(args.rounds):
        for entry in entries(args):
            result = _run(entry['cmd'], entry['env'], f"round {rnd + 1}/{args.rounds} {entry['label']}")
            result.update(kind=entry['kind'], round=rnd)
            runs.setdefault(entry['label'], []).append(result)
            print(f"[bench]   {result['median_s_per_step']:.3f} s/step, {result['images_per_s']:.3f} img/s, "
                  f"peak RSS {result['peak_rss_gib']:.2f} GiB"
                  + (f", MFU {result['mfu']:.3f}" if 'mfu' in result else ''), flush=True)
    ratios = ratio_table(runs)
    print_report(runs, ratios)
    record = dict(argv=sys.argv[1:] if argv is None else list(argv), date=time.strftime('%Y-%m-%d %H:%M UTC',
                  time.gmtime()), machine=machine_info(), runs=runs,
                  ratios=ratios)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(record, f, indent=2)
        print(f'[bench] wrote {args.out}')
    return record


if __name__ == '__main__':
    main()
