"""One run of ours: the real pre-training step (``model.train_step``) of a config on synthetic data, timed per
phase, with its counted FLOPs and the machine's matmul peak (see :mod:`projects.benchmarks.pretrain_benchmark`)."""
import os
import os.path as osp
import resource
import statistics
import tempfile
import time
from typing import Callable, Dict, List, Optional

from projects.common import cpu_tuning

PHASES = ('preprocess', 'forward', 'backward', 'optimizer', 'ema')


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
    """One run of ours in this process; see :mod:`projects.benchmarks.pretrain_benchmark`."""
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

