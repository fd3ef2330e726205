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
import statistics
import subprocess
import sys
import time
from typing import Dict, List

from projects.common import cpu_tuning
from projects.common.cli import cuda_available
from projects.common.cpu_tuning import KEEP_FREED_ENV

from .train_step import PHASES, measure

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# Runs the reference driver (argv[1]) as __main__ would, with the first (warm-up) step's forward_backward under
# FlopCounterMode and a GEMM peak probe at the end, so the reference gets FLOPs and MFU counted as ours are.
REFERENCE_WRAPPER = r"""
import json, runpy, sys, time
import torch
from torch.utils.flop_counter import FlopCounterMode
driver = sys.argv[1]
sys.argv = [driver] + sys.argv[2:]
run_step = runpy.run_path(driver, run_name='run_step')
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
run_step['main']()
a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
best, start = float('inf'), time.perf_counter()
while time.perf_counter() - start < 1.5:
    t0 = time.perf_counter(); torch.mm(a, b); best = min(best, time.perf_counter() - t0)
print('FLOPS ' + json.dumps(dict(flops_per_step=counted[0], peak=2.0 * 1024 ** 3 / best)))
"""
REFERENCE_SETTINGS = ('student.arch=vit_small', 'compute_precision.grad_scaler=false', 'student.block_chunks=0')


def _parse_cfg_options(options: List[str]) -> dict:
    from mmengine.config import DictAction
    ns = argparse.Namespace()
    DictAction(option_strings=['--cfg-options'], dest='cfg_options')(None, ns, options)
    return ns.cfg_options or {}


def run_child(cmd: List[str], env: dict, label: str) -> dict:
    """Run one measured process; its result: the tagged RESULT/FLOPS lines of the reference, else the JSON of its
    last line."""
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


def entries(args, script: str) -> List[dict]:
    """What each round runs: our configs (``script``, the command line, with ``--child``), then the reference at
    each drop-path rate."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    if args.threads:
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    out = []
    for config in args.configs:
        cmd = [sys.executable, script, config, '--child', '--warmup', str(args.warmup),
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
    if cuda_available():
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


def run(args, script: str):
    """What the command line does with its parsed arguments (``args.argv``: the arguments as given): one measured
    process (``--child``, ``--pipeline-child``: the JSON is the last line printed), the loader rounds
    (``--pipeline``) or the training-step rounds; ``script`` is the command line, run again for each measured
    process. Returns the record written to ``--out``."""
    from .loader import loader_cpu, run_pipeline_benchmark  # it imports this module
    if args.pipeline_child:
        src = osp.join(osp.abspath(args.reference), 'src') if args.reference else None
        print(json.dumps(loader_cpu(args.pipeline_child, args.configs[0], args.images, args.num_images, args.warmup,
                                    src, args.multicrop)))
        return None
    if args.pipeline:
        return run_pipeline_benchmark(args, script)
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
        for entry in entries(args, script):
            result = run_child(entry['cmd'], entry['env'], f"round {rnd + 1}/{args.rounds} {entry['label']}")
            result.update(kind=entry['kind'], round=rnd)
            runs.setdefault(entry['label'], []).append(result)
            print(f"[bench]   {result['median_s_per_step']:.3f} s/step, {result['images_per_s']:.3f} img/s, "
                  f"peak RSS {result['peak_rss_gib']:.2f} GiB"
                  + (f", MFU {result['mfu']:.3f}" if 'mfu' in result else ''), flush=True)
    ratios = ratio_table(runs)
    print_report(runs, ratios)
    return write_record(dict(argv=list(args.argv), date=now(), machine=machine_info(), runs=runs, ratios=ratios),
                        args.out)


def now() -> str:
    return time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())


def write_record(record: dict, out) -> dict:
    """``record`` as JSON to ``out`` (when given); returns ``record``."""
    if out:
        with open(out, 'w') as f:
            json.dump(record, f, indent=2)
        print(f'[bench] wrote {out}')
    return record
