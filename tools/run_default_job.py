"""The default job: data -> pre-training -> frozen dense probes and Mask R-CNN fine-tuning -> one table.

    python tools/run_default_job.py                          # preset default, seed 0
    python tools/run_default_job.py --seeds 0,1,2            # every row per seed: mean +- std, paired differences
    python tools/run_default_job.py --preset evidence        # + DINOv2-dagger, seeds 0,1,2 (time: README)
    python tools/run_default_job.py --preset smoke           # a few iterations per stage (CI)
    python tools/run_default_job.py --coco my_coco/ --unlabeled my_photos/   # your data

Per seed the rows are: the position-field teacher (ours), random initialisation, DINOv2-dagger (--with-baseline,
or the evidence preset), and, for the dense probes only, raw pixels and predicting background everywhere.
Each stage is an ordinary command of this repository (tools/data/prepare_demo_data.py, tools/train.py,
tools/model_converters/extract_backbone.py, tools/analysis/dense_probe.py, tools/test.py), run in order with a
progress line (elapsed time, ETA, live iteration count). A stage whose output is complete (its ``done.json``) is
not run again, so an interrupted job resumes where it stopped. Everything goes to --work-dir: one folder per
seed and stage, summary.json (every seed's numbers) and report.html (docs/evidence.md).
The demo detection data is a synthetic composition (generated shapes on real photos); see docs/demo_data.md.
"""
import argparse
import datetime
import json
import os
import os.path as osp
import platform
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
PRETRAIN_CFG = osp.join(ROOT, 'configs/demo/posfield_vit-mini-p16_demo-pool.py')
BASELINE_PRETRAIN_CFG = osp.join(ROOT, 'configs/demo/dinov2-dagger_vit-mini-p16_demo-pool.py')
DET_CFG = osp.join(ROOT, 'configs/demo/mask-rcnn_vit-mini-p16_demo-coco.py')
BASELINE_DET_CFG = osp.join(ROOT, 'configs/demo/mask-rcnn_vit-mini-p16-dinov2-dagger_demo-coco.py')
METRIC_KEYS = ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75', 'bbox_mAP_s', 'bbox_mAP_m', 'bbox_mAP_l',
               'segm_mAP', 'segm_mAP_50', 'segm_mAP_75', 'segm_mAP_s', 'segm_mAP_m', 'segm_mAP_l')
PROBE_KEYS = ('patch_miou', 'fg_miou', 'crop_knn_top1', 'box_iou', 'box_iou50')
PRESETS = {
    'smoke': dict(pretrain_iters=4, det_iters=4, pretrain_batch=8, num_train=24, num_val=8, seeds=[0],
                  baseline=False, probe_img_size=128, probe_epochs=2),
    'default': dict(pretrain_iters=400, det_iters=400, pretrain_batch=32, num_train=200, num_val=50, seeds=[0],
                    baseline=False, probe_img_size=256, probe_epochs=20),
    'evidence': dict(pretrain_iters=400, det_iters=400, pretrain_batch=32, num_train=200, num_val=50,
                     seeds=[0, 1, 2], baseline=True, probe_img_size=256, probe_epochs=20),
}
# Prior seconds per unit (iteration; a whole probe) from the README's measured job, for the ETA until a stage of the
# kind has run (projects/common/jobs.py scales them by how the measured kinds ran).
PRIOR_SEC_PER_ITER = dict(pretrain=1.4, det=1.3, probe=90.0)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument('--preset', choices=sorted(PRESETS), default='default',
                   help='smoke: minutes, for CI; default: <= 40 min per seed on 2 cores; evidence: + DINOv2-dagger, '
                        '3 seeds')
    p.add_argument('--work-dir', default=osp.join('work_dirs', 'default_job'))
    p.add_argument('--data-root', default=osp.join('data', 'demo'),
                   help='where tools/data/prepare_demo_data.py builds (or has built) the demo data')
    p.add_argument('--unlabeled', help='use this folder of images for pre-training instead of the demo pool')
    p.add_argument('--coco', help='use this COCO-format folder (train/, val/, annotations/instances_{train,val}.json) '
                   'for the probes and detection instead of the demo set')
    p.add_argument('--with-baseline', action='store_true', help='also pre-train and evaluate DINOv2-dagger')
    p.add_argument('--pretrain-iters', type=int, help='override the preset')
    p.add_argument('--det-iters', type=int, help='override the preset')
    p.add_argument('--no-detection', action='store_true', help='dense probes only (no Mask R-CNN stages)')
    p.add_argument('--pretrain-options', nargs='+', default=[], metavar='KEY=VALUE',
                   help='extra --cfg-options of both pre-training configs (the scale search of docs/evidence.md: '
                        'image size, model size, ...)')
    p.add_argument('--probe-img-size', type=int, help='override the preset: image size of the dense probes')
    p.add_argument('--workers', type=int, default=2, help='dataloader workers per stage')
    p.add_argument('--seeds', help='comma-separated seeds, e.g. 0,1,2: every row is run once per seed '
                   '(pre-training, random initialisation, probes and detection all take that seed)')
    p.add_argument('--seed', type=int, help='a single seed (same as --seeds N)')
    p.add_argument('--no-report', action='store_true', help='do not write report.html')
    args = p.parse_args(argv)
    if args.seeds is not None and args.seed is not None:
        p.error('give --seeds or --seed, not both')
    try:
        args.seed_list = ([args.seed] if args.seed is not None else
                          [int(s) for s in args.seeds.split(',')] if args.seeds else None)
    except ValueError:
        p.error(f'--seeds must be comma-separated integers, got {args.seeds!r}')
    if args.seed_list is not None and len(set(args.seed_list)) != len(args.seed_list):
        p.error(f'--seeds repeats a seed: {args.seeds}')
    for name in ('pretrain_iters', 'det_iters'):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f'--{name.replace("_", "-")} must be positive')
    if args.unlabeled and not osp.isdir(args.unlabeled):
        p.error(f'--unlabeled is not a folder: {args.unlabeled}')
    if args.coco and not osp.isdir(args.coco):
        p.error(f'--coco is not a folder: {args.coco}')
    return args


def run(cmd, log_path, progress=None, stage=None, echo=('coco/bbox_mAP:', 'loaded ', 'Error', 'error:', '[prepare]',
                                                          '[dense-probe]', 'written')):
    """Run a command, keep its full output in log_path, echo the key lines and report mmengine's iterations."""
    from projects.common.jobs import run_logged
    run_logged(cmd, log_path, ROOT, echo, on_line=progress.watch(stage) if progress is not None else None)


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


def pretrain_options(data_root, iters, batch, workers, seed):
    return [f'randomness.seed={seed}', f'train_dataloader.dataset.data_root={data_root}',
            f'train_cfg.max_iters={iters}', f'train_dataloader.batch_size={batch}',
            f'train_dataloader.num_workers={workers}', f'train_dataloader.persistent_workers={workers > 0}',
            f'default_hooks.checkpoint.interval={iters}',
            f'param_scheduler.0.end={max(1, iters // 10)}', f'param_scheduler.1.begin={max(1, iters // 10)}',
            f'param_scheduler.1.T_max={max(1, iters - iters // 10)}', f'param_scheduler.1.end={iters}']


def plan(args, preset, seeds, baseline):
    """Every stage of the job, in order: dict(name, kind, units (iterations or 1), folder, settings, ...)."""
    wd = args.wd
    stages = []
    pre = [('posfield', PRETRAIN_CFG, DET_CFG)]
    if baseline:
        pre.append(('dinov2-dagger', BASELINE_PRETRAIN_CFG, BASELINE_DET_CFG))
    probe = dict(img_size=preset['probe_img_size'], epochs=preset['probe_epochs'], coco=args.coco_root)
    for seed in seeds:
        sd = osp.join(wd, f'seed_{seed}')
        for name, cfg, det_cfg in pre:
            folder = osp.join(sd, f'pretrain_{name}')
            settings = dict(cfg=cfg, unlabeled=args.unlabeled, iters=preset['pretrain_iters'],
                            batch=preset['pretrain_batch'], seed=seed, options=args.pretrain_options)
            stages.append(dict(name=f'pretrain {name} (seed {seed})', kind='pretrain', units=preset['pretrain_iters'],
                               folder=folder, settings=settings, cfg=cfg, seed=seed, init=name))
            stages.append(dict(name=f'probe {name} (seed {seed})', kind='probe', units=1, init=name, seed=seed,
                               folder=osp.join(sd, f'probe_{name}'), backbone=osp.join(folder, 'backbone.pth'),
                               cfg=cfg, settings=dict(probe, backbone=osp.join(folder, 'backbone.pth'), seed=seed)))
            if not args.no_detection:
                # settings name what the stage computes (backbone, data, iterations, seed); the config file is
                # where the detector is written down, so moving a delta into a config keeps finished stages done
                stages.append(dict(name=f'detection {name} (seed {seed})', kind='det', units=preset['det_iters'],
                                   folder=osp.join(sd, f'det_{name}'), backbone=osp.join(folder, 'backbone.pth'),
                                   cfg=det_cfg, seed=seed, init=name,
                                   settings=dict(coco=args.coco_root, iters=preset['det_iters'], seed=seed,
                                                 backbone=osp.join(folder, 'backbone.pth'))))
        stages.append(dict(name=f'probe random init + floors (seed {seed})', kind='probe', units=1, init='random',
                           folder=osp.join(sd, 'probe_random'), cfg=PRETRAIN_CFG, backbone=None, seed=seed,
                           settings=dict(probe, cfg=PRETRAIN_CFG, seed=seed, options=args.pretrain_options)))
        if not args.no_detection:
            stages.append(dict(name=f'detection random init (seed {seed})', kind='det', units=preset['det_iters'],
                               folder=osp.join(sd, 'det_random'), backbone=None, cfg=DET_CFG, seed=seed, init='random',
                               settings=dict(coco=args.coco_root, iters=preset['det_iters'], seed=seed)))
    return stages


def run_stage(stage, args, preset, classes, progress):
    folder, seed = stage['folder'], stage['seed']
    os.makedirs(folder, exist_ok=True)
    if stage['kind'] == 'pretrain':
        iters = preset['pretrain_iters']
        opts = pretrain_options(args.unlabeled, iters, preset['pretrain_batch'], args.workers, seed)
        opts += args.pretrain_options
        run([sys.executable, 'tools/train.py', stage['cfg'], '--work-dir', folder, '--cfg-options', *opts],
            osp.join(folder, 'stage.log'), progress, stage)
        backbone = osp.join(folder, 'backbone.pth')
        run([sys.executable, 'tools/model_converters/extract_backbone.py', osp.join(folder, f'iter_{iters}.pth'),
             backbone, '--key', 'teacher'], osp.join(folder, 'extract.log'), echo=('backbone tensors', ))
        return [osp.join(folder, f'iter_{iters}.pth'), backbone]
    if stage['kind'] == 'probe':
        out = osp.join(folder, 'probe.json')
        model = stage['backbone'] or stage['cfg']
        cmd = [sys.executable, 'tools/analysis/dense_probe.py', model, '--coco', args.coco_root, '--out', out,
               '--seed', str(seed), '--img-size', str(preset['probe_img_size']),
               '--epochs', str(preset['probe_epochs']), '--name', stage['init']]
        # every row runs without [CLS], as the detector does; a teacher's config (as trained, with
        # --pretrain-options) is read from its checkpoint
        cmd.append('--without-cls')
        if not stage['backbone']:
            cmd += ['--floors'] + (['--cfg-options'] + args.pretrain_options if args.pretrain_options else [])
        run(cmd, osp.join(folder, 'stage.log'), progress, stage)
        return [out]
    iters = preset['det_iters']
    bb = stage['backbone']
    opts = det_options(args.coco_root, classes, iters, args.workers) + [f'randomness.seed={seed}']
    opts.append(f'model.backbone.init_cfg.checkpoint={bb}' if bb else 'model.backbone.init_cfg=None')
    run([sys.executable, 'tools/train.py', stage['cfg'], '--work-dir', folder, '--cfg-options', *opts],
        osp.join(folder, 'stage.log'), progress, stage)
    out = osp.join(folder, 'metrics.json')
    run([sys.executable, 'tools/test.py', stage['cfg'], osp.join(folder, f'iter_{iters}.pth'), '--work-dir', folder,
         '--out', out, '--show-dir', 'vis', '--interval', '10', '--cfg-options', *opts],
        osp.join(folder, 'test.log'), progress, stage)
    return [out]


def collect(stages, seeds, inits):
    """Per-seed rows ``{init, seed, <AP keys>, <PROBE_KEYS>}`` from the stages' outputs (``box_iou``,
    ``box_iou50``: the localisation probe's mean IoU and IoU >= 0.5 rate; on the all-background row, the constant
    predictor's)."""
    rows = {(init, seed): dict(init=init, seed=seed) for seed in seeds for init in inits}
    for st in stages:
        row_init = {'posfield': 'posfield (ours)', 'dinov2-dagger': 'DINOv2-dagger', 'random': 'random init'}
        if st['kind'] == 'det':
            with open(osp.join(st['folder'], 'metrics.json')) as f:
                metrics = json.load(f)['metrics']
            rows[(row_init[st['init']], st['seed'])].update({k: metrics.get(f'coco/{k}') for k in METRIC_KEYS})
        elif st['kind'] == 'probe':
            with open(osp.join(st['folder'], 'probe.json')) as f:
                probe = json.load(f)
            for r in probe['rows']:
                init = row_init.get(st['init']) if r is probe['rows'][0] else r['name']
                rows[(init, st['seed'])].update(patch_miou=r['patch']['miou'],
                                                fg_miou=(r.get('foreground') or {}).get('miou'),
                                                crop_knn_top1=(r.get('crop_knn') or {}).get('top1'),
                                                box_iou=(r.get('box') or {}).get('mean_iou'),
                                                box_iou50=(r.get('box') or {}).get('iou50_rate'))
    return [rows[(init, seed)] for init in inits for seed in seeds]


def aggregate(rows, inits, seeds):
    """mean +- std over seeds per init and metric, and per-seed paired differences of ours against each other
    row (same seed: same data order, probe split and detector seed)."""
    from statistics import mean, stdev
    keys = METRIC_KEYS + PROBE_KEYS
    by = {(r['init'], r['seed']): r for r in rows}

    def stats(values):
        values = [v for v in values if v is not None]
        if not values:
            return None
        return dict(mean=mean(values), std=stdev(values) if len(values) > 1 else 0.0, n=len(values),
                    values=values)

    table = {init: {k: stats([by[(init, s)].get(k) for s in seeds]) for k in keys} for init in inits}
    ours = 'posfield (ours)'
    paired = {}
    for other in inits:
        if other in (ours, 'all background'):  # the floor of the measure, not a competing initialisation
            continue
        paired[other] = {}
        for k in keys:
            diffs = [by[(ours, s)].get(k) - by[(other, s)].get(k) for s in seeds
                     if by[(ours, s)].get(k) is not None and by[(other, s)].get(k) is not None]
            if diffs:
                st = stats(diffs)
                paired[other][k] = dict(st, per_seed=dict(zip([str(s) for s in seeds], diffs)))
    return table, paired


def data_description(args, classes, own_pool, own_coco):
    """What the table was computed on: the user's folder names and class count, or the demo data by name."""
    if own_coco:
        det = (f'{osp.basename(args.coco_root.rstrip("/"))}/ val split ({len(classes)} classes: '
               f'{", ".join(classes[:8])}{", ..." if len(classes) > 8 else ""})')
    else:
        det = f'demo val set (synthetic composition on real photos, {len(classes)} classes)'
    pool = f'{osp.basename(args.unlabeled.rstrip("/"))}/' if own_pool else 'the demo pool of real photos'
    return f'{det}; pre-trained on {pool}'


def main(argv=None):
    args = parse_args(argv)
    preset = dict(PRESETS[args.preset])
    preset['pretrain_iters'] = args.pretrain_iters or preset['pretrain_iters']
    preset['det_iters'] = args.det_iters or preset['det_iters']
    preset['probe_img_size'] = args.probe_img_size or preset['probe_img_size']
    seeds = args.seed_list or preset['seeds']
    baseline = args.with_baseline or preset['baseline']
    args.wd = wd = osp.abspath(args.work_dir)
    os.makedirs(wd, exist_ok=True)
    started = time.time()

    own_pool, own_coco = args.unlabeled is not None, args.coco is not None
    source = 'your folders' if own_pool and own_coco else 'demo data (tools/data/prepare_demo_data.py)'
    print(f'[stage 0] data: {source}', flush=True)
    if not (own_pool and own_coco):
        data_root = osp.abspath(args.data_root)
        run([sys.executable, 'tools/data/prepare_demo_data.py', '--data-root', data_root, '--quiet',
             '--num-train', str(preset['num_train']), '--num-val', str(preset['num_val'])],
            osp.join(wd, 'data.log'), echo=('[prepare]', '[demo-data]', 'Error', 'error'))
    args.unlabeled = osp.abspath(args.unlabeled if own_pool else osp.join(data_root, 'unlabeled'))
    args.coco_root = osp.abspath(args.coco if own_coco else osp.join(data_root, 'coco'))
    with open(coco_paths(args.coco_root)['train']) as f:
        classes = [c['name'] for c in sorted(json.load(f)['categories'], key=lambda c: c['id'])]

    from projects.common.jobs import Progress, done_path, is_done, mark_done
    stages = plan(args, preset, seeds, baseline)
    for st in stages:
        st['done'] = is_done(st['folder'], st['settings'])
    progress = Progress(stages, PRIOR_SEC_PER_ITER, started)
    for st in stages:
        progress.begin(st)
        if st['done']:
            continue
        t = time.time()
        outputs = run_stage(st, args, preset, classes, progress)
        mark_done(st['folder'], st['settings'], outputs, time.time() - t)
        progress.end(st)

    inits = ['posfield (ours)'] + (['DINOv2-dagger'] if baseline else []) + ['random init', 'raw pixels',
                                                                             'all background']
    rows = collect(stages, seeds, inits)
    table, paired = aggregate(rows, inits, seeds)
    stage_minutes = {}
    for st in stages:
        with open(done_path(st['folder'])) as f:
            stage_minutes[osp.relpath(st['folder'], wd)] = round(json.load(f)['seconds'] / 60, 1)
    summary = dict(
        preset=args.preset, seeds=seeds,
        iterations=dict(pretrain=preset['pretrain_iters'],
                        detection=None if args.no_detection else preset['det_iters']),
        probe=dict(img_size=preset['probe_img_size'], epochs=preset['probe_epochs']),
        date=datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
        hardware=f'{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, no GPU'
        if not _cuda() else 'CUDA', minutes_this_run=round((time.time() - started) / 60, 1),
        minutes_all_stages=round(sum(stage_minutes.values()), 1), stage_minutes=stage_minutes,
        data=dict(unlabeled=args.unlabeled, coco=args.coco_root, classes=classes,
                  description=data_description(args, classes, own_pool, own_coco),
                  note='user data' if own_coco else
                  'detection data: synthetic shapes composed on real photographs (docs/demo_data.md)'),
        results=rows, mean_std=table, paired_differences=paired)
    with open(osp.join(wd, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    print(format_table(summary))
    if not args.no_report:
        from projects.report import build_report
        print(f'report: {build_report(wd)}', flush=True)
    return summary


def _cuda():
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return False


def _fmt(stat, scale=1.0):
    if not stat:
        return 'n/a'
    if stat['n'] > 1:
        return f"{scale * stat['mean']:.1f} ± {scale * stat['std']:.1f}"
    return f"{scale * stat['mean']:.1f}"


def format_table(summary):
    seeds = summary['seeds']
    cols = [('patch mIoU', 'patch_miou', 1.0), ('fg mIoU', 'fg_miou', 1.0), ('crop k-NN', 'crop_knn_top1', 1.0),
            ('box IoU', 'box_iou', 1.0), ('box IoU>=.5', 'box_iou50', 1.0), ('AP box', 'bbox_mAP', 100.0),
            ('AP mask', 'segm_mAP', 100.0)]
    head = f"{'initialisation':<18}" + ''.join(f'{c[0]:>15}' for c in cols)
    lines = ['', f"Default job ({summary['preset']}, seeds {','.join(map(str, seeds))}"
             f"{', mean ± std over seeds' if len(seeds) > 1 else ''}) on the {summary['data']['description']}; "
             f"{summary['hardware']}, {summary['minutes_all_stages']} min of stages", head, '-' * len(head)]
    for init, stats in summary['mean_std'].items():
        lines.append(f'{init:<18}' + ''.join(f'{_fmt(stats.get(k), s):>15}' for _, k, s in cols))
    for other, diffs in summary['paired_differences'].items():
        if not diffs:
            continue
        lines.append(f'{"ours - " + other:<18}' + ''.join(f'{_fmt(diffs.get(k), s):>15}' for _, k, s in cols))
        for k, label in (('patch_miou', 'patch mIoU'), ('box_iou', 'box IoU'), ('box_iou50', 'box IoU>=.5')):
            if k in diffs:
                per = ', '.join(f'seed {s}: {v:+.2f}' for s, v in diffs[k]['per_seed'].items())
                lines.append(f'{"":<18}  {label} per seed: {per}')
    return '\n'.join(lines)


if __name__ == '__main__':
    main()
