"""Pre-training cost of the position-field method against its DINOv2-dagger baseline, side by side.

    python tools/benchmarks/pretrain_benchmark.py CONFIG [--iters 20] [--batch-size 32] [--device cuda]
        [--data-root FOLDER] [--out bench.json]

For each variant (the config as given = "method"; the same config with the interpolated position embedding,
constant placement and content-only masking = "baseline") it runs warm-up + timed optimisation steps in a
fresh process and reports images/s, the step time split into data (pipeline + collate), forward (student +
teacher + losses), backward, optimiser and EMA, and peak memory (CUDA: max allocated; CPU: peak RSS of the
process). Without --data-root it writes random-texture images to a temporary folder (synthetic: it measures
speed, not accuracy). Results are printed as a table and written as JSON.
"""
import argparse
import json
import os
import os.path as osp
import resource
import subprocess
import sys
import tempfile
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

PARTS = ('data', 'forward', 'backward', 'optimizer', 'ema')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='a position-field pre-training config')
    p.add_argument('--iters', type=int, default=20, help='timed steps per variant')
    p.add_argument('--warmup', type=int, default=3, help='untimed steps first')
    p.add_argument('--batch-size', type=int, default=None, help='default: the config\'s')
    p.add_argument('--device', default='cuda' if _cuda() else 'cpu')
    p.add_argument('--amp', choices=['none', 'bf16', 'fp16'], default='none', help='autocast dtype (CUDA)')
    p.add_argument('--data-root', help='folder of images (default: synthetic images in a temporary folder)')
    p.add_argument('--rounds', type=int, default=2,
                   help='run baseline and method alternately this many times; the fastest run of each is kept '
                   '(a shared machine makes single runs noisy)')
    p.add_argument('--out', help='write the results as JSON here')
    p.add_argument('--variant', choices=['method', 'baseline'], help=argparse.SUPPRESS)  # child process
    return p.parse_args(argv)


def _cuda():
    import torch
    return torch.cuda.is_available()


def make_images(folder, n=64, size=(320, 256)):
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    for i in range(n):
        base = rng.random((size[1] // 16, size[0] // 16, 3))
        img = np.kron(base, np.ones((16, 16, 1)))
        Image.fromarray((img * 255).astype(np.uint8)).save(osp.join(folder, f'{i}.jpg'))
    return folder


def to_baseline(cfg):
    """DINOv2-dagger: interpolated position embedding, no placement augmentation, content masking only."""
    cfg.model.backbone.pos_embed_type = 'interpolate'
    cfg.model.backbone.pos_field = None
    for t in cfg.train_dataloader.dataset.pipeline:
        if t['type'] == 'PosFieldMultiCrop':
            t['placement'] = dict(mode='const')
        if t['type'] == 'PosFieldMaskGenerator':
            t['content_ratio'] = 1.0
    return cfg


def measure(args):
    import torch
    from mmengine.dataset import default_collate
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS, MODELS

    from projects.common.runner_setup import load_config
    cfg = load_config(args.config)
    if args.variant == 'baseline':
        cfg = to_baseline(cfg)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    cfg.train_dataloader.dataset.data_root = args.data_root
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    batch_size = args.batch_size or cfg.train_dataloader.batch_size
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).to(device)
    model.init_weights()
    model.set_train_length(max_iters=10 * (args.iters + args.warmup), iters_per_epoch=args.iters + args.warmup)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.04)
    dtype = dict(none=None, bf16=torch.bfloat16, fp16=torch.float16)[args.amp]

    def sync():
        if device.type == 'cuda':
            torch.cuda.synchronize()

    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    times = {k: 0.0 for k in PARTS}
    cursor = 0
    for step in range(args.warmup + args.iters):
        t0 = time.perf_counter()
        samples = []
        while len(samples) < batch_size:
            item = dataset[cursor % len(dataset)]
            cursor += 1
            if item is not None:
                samples.append(item)
        batch = default_collate(samples)
        data = model.data_preprocessor(batch, True)
        sync()
        t1 = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            losses = model(**data, mode='loss')
        loss, _ = model.parse_losses(losses)
        sync()
        t2 = time.perf_counter()
        loss.backward()
        sync()
        t3 = time.perf_counter()
        optim.step()
        optim.zero_grad(set_to_none=True)
        model.step += 1
        sync()
        t4 = time.perf_counter()
        model.teacher.update(model._student(), model.schedule()['momentum'])
        sync()
        t5 = time.perf_counter()
        if step >= args.warmup:
            for k, (a, b) in zip(PARTS, [(t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5)]):
                times[k] += b - a
    per_step = {k: v / args.iters for k, v in times.items()}
    total = sum(per_step.values())
    if device.type == 'cuda':
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
        memory_kind = 'CUDA max allocated'
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        memory_kind = 'peak RSS'
    return dict(variant=args.variant, images_per_s=batch_size / total, step_s=total,
                **{f'{k}_s': v for k, v in per_step.items()}, peak_memory_mb=peak_mb, memory=memory_kind,
                batch_size=batch_size, device=str(device), amp=args.amp)


def main(argv=None):
    args = parse_args(argv)
    if args.variant:  # child: one variant, JSON on the last line
        print(json.dumps(measure(args)))
        return None
    tmp = None
    if not args.data_root:
        tmp = tempfile.mkdtemp(prefix='bench_imgs_')
        args.data_root = make_images(tmp)
    best = {}
    for variant in ('baseline', 'method') * args.rounds:
        cmd = [sys.executable, osp.abspath(__file__), args.config, '--variant', variant, '--iters', str(args.iters),
               '--warmup', str(args.warmup), '--device', args.device, '--amp', args.amp, '--data-root',
               args.data_root] + (['--batch-size', str(args.batch_size)] if args.batch_size else [])
        print(f'[bench] {variant}: {args.warmup} warm-up + {args.iters} timed steps on {args.device} ...', flush=True)
        out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT))
        if out.returncode != 0:
            raise SystemExit(f'{variant} failed:\n{out.stderr[-3000:]}')
        run = json.loads(out.stdout.strip().splitlines()[-1])
        if variant not in best or run['step_s'] < best[variant]['step_s']:
            best[variant] = run
    results = [best['baseline'], best['method']]
    base, meth = results
    ratio = dict(step_time=meth['step_s'] / base['step_s'], peak_memory=meth['peak_memory_mb'] / base['peak_memory_mb'])
    head = f"{'variant':<9} {'img/s':>7} {'step s':>7} " + ' '.join(f'{k:>9}' for k in PARTS) + f" {'peak MB':>9}"
    print(head)
    for r in results:
        print(f"{r['variant']:<9} {r['images_per_s']:>7.1f} {r['step_s']:>7.3f} "
              + ' '.join(f"{r[k + '_s']:>9.3f}" for k in PARTS) + f" {r['peak_memory_mb']:>9.0f}")
    print(f"method / baseline: step time x{ratio['step_time']:.3f}, peak memory x{ratio['peak_memory']:.3f} "
          f"({results[0]['memory']}; targets: <= 1.15 and <= 1.10)")
    record = dict(config=args.config, results=results, ratio=ratio, rounds=args.rounds,
                  data='synthetic random-texture images' if tmp else args.data_root)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(record, f, indent=2)
    return record


if __name__ == '__main__':
    main()
