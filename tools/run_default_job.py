"""The default job: data -> position-field pre-training -> Mask R-CNN fine-tuning -> COCO AP, on one machine.

    python tools/run_default_job.py                      # about 30 minutes on 2 CPU cores
    python tools/run_default_job.py --preset smoke       # a few iterations per stage (minutes)
    python tools/run_default_job.py --preset long        # more iterations and data (not yet run end to end)
    python tools/run_default_job.py --with-baseline      # add the DINOv2-dagger pre-training as a third row

Each stage is an ordinary command of this repository (tools/data/prepare_demo_data.py, tools/train.py,
tools/model_converters/extract_backbone.py, tools/test.py); this script runs them in order, shows their
progress, and prints the table. Everything goes to --work-dir (default work_dirs/default_job): one folder per
stage with its log, checkpoints and metrics.json, a few --show-dir images, and summary.json.
The detection data is a synthetic composition (generated shapes on real photos); see docs/demo_data.md.
"""
import argparse
import datetime
import json
import os
import os.path as osp
import platform
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PRETRAIN_CFG = osp.join(ROOT, 'configs/demo/posfield_vit-mini-p16_demo-pool.py')
BASELINE_PRETRAIN_CFG = osp.join(ROOT, 'configs/demo/dinov2-dagger_vit-mini-p16_demo-pool.py')
DET_CFG = osp.join(ROOT, 'configs/demo/mask-rcnn_vit-mini-p16_demo-coco.py')
METRIC_KEYS = ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75', 'bbox_mAP_s', 'bbox_mAP_m', 'bbox_mAP_l',
               'segm_mAP', 'segm_mAP_50', 'segm_mAP_75', 'segm_mAP_s', 'segm_mAP_m', 'segm_mAP_l')
PRESETS = {
    'smoke': dict(pretrain_iters=4, det_iters=4, pretrain_batch=8, num_train=24, num_val=8),
    'default': dict(pretrain_iters=400, det_iters=400, pretrain_batch=32, num_train=200, num_val=50),
    'long': dict(pretrain_iters=2000, det_iters=1500, pretrain_batch=32, num_train=400, num_val=100),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument('--preset', choices=sorted(PRESETS), default='default',
                   help='smoke: minutes, for CI; default: ~30 min on 2 cores; long: more iterations and data')
    p.add_argument('--work-dir', default=osp.join('work_dirs', 'default_job'))
    p.add_argument('--data-root', default=osp.join('data', 'demo'),
                   help='where tools/data/prepare_demo_data.py builds (or has built) the demo data')
    p.add_argument('--unlabeled', help='use this folder of images for pre-training instead of the demo pool')
    p.add_argument('--coco', help='use this COCO-format folder (train/, val/, annotations/instances_{train,val}.json) '
                   'for detection instead of the demo set')
    p.add_argument('--with-baseline', action='store_true', help='also pre-train and fine-tune DINOv2-dagger')
    p.add_argument('--pretrain-iters', type=int, help='override the preset')
    p.add_argument('--det-iters', type=int, help='override the preset')
    p.add_argument('--workers', type=int, default=2, help='dataloader workers per stage')
    p.add_argument('--seed', type=int, default=0,
                   help='seed of every training stage; rerun with other seeds to see how much the table moves')
    return p.parse_args(argv)


def run(cmd, log_path, echo=('Iter(', 'coco/bbox_mAP:', 'loaded ', 'Error', 'error:', '[prepare]', 'written')):
    """Run a stage, keep its full output in log_path, and echo the progress lines."""
    os.makedirs(osp.dirname(log_path), exist_ok=True)
    print('$ ' + ' '.join(cmd), flush=True)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    with open(log_path, 'w') as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
        for line in proc.stdout:
            log.write(line)
            if any(k in line for k in echo):
                print('   ' + line.rstrip()[:220], flush=True)
        code = proc.wait()
    if code != 0:
        with open(log_path) as f:
            tail = ''.join(f.readlines()[-30:])
        raise SystemExit(f'stage failed (exit {code}): {" ".join(cmd)}\n--- last lines of {log_path} ---\n{tail}')


def coco_paths(coco_root):
    paths = {s: osp.join(coco_root, 'annotations', f'instances_{s}.json') for s in ('train', 'val')}
    for split, path in paths.items():
        if not osp.isfile(path):
            raise SystemExit(f'--coco {coco_root}: missing {path}')
    return paths


def det_options(coco_root, classes, iters, workers):
    ann = coco_paths(coco_root)
    root = coco_root.rstrip('/') + '/'
    names = '[' + ','.join(classes) + ']'
    return [f'train_dataloader.dataset.data_root={root}', f'val_dataloader.dataset.data_root={root}',
            f'test_dataloader.dataset.data_root={root}', f'val_evaluator.ann_file={ann["val"]}',
            f'test_evaluator.ann_file={ann["val"]}', f'train_dataloader.dataset.metainfo.classes={names}',
            f'val_dataloader.dataset.metainfo.classes={names}', f'test_dataloader.dataset.metainfo.classes={names}',
            f'model.roi_head.bbox_head.num_classes={len(classes)}',
            f'model.roi_head.mask_head.num_classes={len(classes)}', f'train_cfg.max_iters={iters}',
            f'train_cfg.val_interval={iters}', f'default_hooks.checkpoint.interval={iters}',
            f'train_dataloader.num_workers={workers}', f'train_dataloader.persistent_workers={workers > 0}',
            f'param_scheduler.1.end={iters}',
            f'param_scheduler.1.milestones=[{int(iters * 0.889)},{int(iters * 0.963)}]']


def pretrain(cfg, wd, data_root, iters, batch, workers, seed):
    opts = [f'randomness.seed={seed}', f'train_dataloader.dataset.data_root={data_root}',
            f'train_cfg.max_iters={iters}', f'train_dataloader.batch_size={batch}',
            f'train_dataloader.num_workers={workers}', f'train_dataloader.persistent_workers={workers > 0}',
            f'default_hooks.checkpoint.interval={iters}',
            f'param_scheduler.0.end={max(1, iters // 10)}', f'param_scheduler.1.begin={max(1, iters // 10)}',
            f'param_scheduler.1.T_max={max(1, iters - iters // 10)}', f'param_scheduler.1.end={iters}']
    run([sys.executable, 'tools/train.py', cfg, '--work-dir', wd, '--cfg-options', *opts], osp.join(wd, 'stage.log'))
    ckpt = osp.join(wd, f'iter_{iters}.pth')
    backbone = osp.join(wd, 'backbone.pth')
    run([sys.executable, 'tools/model_converters/extract_backbone.py', ckpt, backbone, '--key', 'teacher'],
        osp.join(wd, 'extract.log'), echo=('backbone tensors', ))
    return backbone


def finetune_and_test(wd, coco_root, classes, iters, workers, seed, backbone=None, extra=()):
    opts = det_options(coco_root, classes, iters, workers) + [f'randomness.seed={seed}'] + list(extra)
    opts.append(f'model.backbone.init_cfg.checkpoint={backbone}' if backbone else 'model.backbone.init_cfg=None')
    run([sys.executable, 'tools/train.py', DET_CFG, '--work-dir', wd, '--cfg-options', *opts],
        osp.join(wd, 'stage.log'))
    out = osp.join(wd, 'metrics.json')
    run([sys.executable, 'tools/test.py', DET_CFG, osp.join(wd, f'iter_{iters}.pth'), '--work-dir', wd, '--out', out,
         '--show-dir', 'vis', '--interval', '10', '--cfg-options', *opts], osp.join(wd, 'test.log'))
    with open(out) as f:
        metrics = json.load(f)['metrics']
    return {k: metrics.get(f'coco/{k}') for k in METRIC_KEYS}


def main(argv=None):
    args = parse_args(argv)
    preset = dict(PRESETS[args.preset])
    preset['pretrain_iters'] = args.pretrain_iters or preset['pretrain_iters']
    preset['det_iters'] = args.det_iters or preset['det_iters']
    wd = osp.abspath(args.work_dir)
    os.makedirs(wd, exist_ok=True)
    started = time.time()
    times = {}

    t = time.time()
    if args.unlabeled and args.coco:
        unlabeled, coco_root = osp.abspath(args.unlabeled), osp.abspath(args.coco)
    else:
        data_root = osp.abspath(args.data_root)
        run([sys.executable, 'tools/data/prepare_demo_data.py', '--data-root', data_root,
             '--num-train', str(preset['num_train']), '--num-val', str(preset['num_val'])],
            osp.join(wd, 'data.log'), echo=('[prepare]', 'Error', 'error'))
        unlabeled = osp.abspath(args.unlabeled or osp.join(data_root, 'unlabeled'))
        coco_root = osp.abspath(args.coco or osp.join(data_root, 'coco'))
    with open(coco_paths(coco_root)['train']) as f:
        classes = [c['name'] for c in sorted(json.load(f)['categories'], key=lambda c: c['id'])]
    times['data'] = time.time() - t

    rows = []
    t = time.time()
    backbone = pretrain(PRETRAIN_CFG, osp.join(wd, 'pretrain_posfield'), unlabeled, preset['pretrain_iters'],
                        preset['pretrain_batch'], args.workers, args.seed)
    times['pretrain_posfield'] = time.time() - t
    for name, bb in [('posfield (ours)', backbone), ('random init', None)]:
        t = time.time()
        stage = 'det_' + name.split()[0]
        rows.append(dict(init=name, **finetune_and_test(osp.join(wd, stage), coco_root, classes,
                                                        preset['det_iters'], args.workers, args.seed, bb)))
        times[stage] = time.time() - t
    if args.with_baseline:
        t = time.time()
        bb = pretrain(BASELINE_PRETRAIN_CFG, osp.join(wd, 'pretrain_dinov2-dagger'), unlabeled,
                      preset['pretrain_iters'], preset['pretrain_batch'], args.workers, args.seed)
        plain = ['model.backbone.pos_embed_type=interpolate', 'model.backbone.pos_field=None',
                 'model.backbone.pretrain_img_size=96']
        rows.append(dict(init='DINOv2-dagger', **finetune_and_test(
            osp.join(wd, 'det_dinov2-dagger'), coco_root, classes, preset['det_iters'], args.workers, args.seed, bb,
            plain)))
        times['baseline'] = time.time() - t

    summary = dict(
        preset=args.preset, seed=args.seed,
        iterations=dict(pretrain=preset['pretrain_iters'], detection=preset['det_iters']),
        date=datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
        hardware=f'{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, no GPU'
        if not _cuda() else 'CUDA', minutes=round((time.time() - started) / 60, 1),
        stage_minutes={k: round(v / 60, 1) for k, v in times.items()},
        data=dict(unlabeled=unlabeled, coco=coco_root, classes=classes,
                  note='detection data: synthetic shapes composed on real photographs (docs/demo_data.md)'),
        results=rows)
    with open(osp.join(wd, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    print(format_table(summary))
    return summary


def _cuda():
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return False


def format_table(summary):
    head = f"{'initialisation':<18} {'AP box':>7} {'AP50':>6} {'AP75':>6} {'AP mask':>8} {'AP50':>6} {'AP75':>6}"
    lines = ['', f"Default job ({summary['preset']}): COCO AP on the demo val set "
             f"(synthetic composition on real photos), {summary['hardware']}, {summary['minutes']} min", head,
             '-' * len(head)]
    for r in summary['results']:
        vals = [r[k] for k in ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75', 'segm_mAP', 'segm_mAP_50', 'segm_mAP_75')]
        vals = [f'{100 * v:.1f}' if v is not None else 'n/a' for v in vals]
        lines.append(f'{r["init"]:<18} {vals[0]:>7} {vals[1]:>6} {vals[2]:>6} {vals[3]:>8} {vals[4]:>6} {vals[5]:>6}')
    return '\n'.join(lines)


if __name__ == '__main__':
    main()
