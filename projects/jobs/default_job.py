"""The default job (tools/run_default_job.py): data -> pre-training -> frozen dense probes and Mask R-CNN
fine-tuning -> one table, per seed, with mean ± std and paired differences over seeds; summary.json and
report.html in the work dir."""
import json
import os
import os.path as osp
import platform
import sys
import time
from dataclasses import dataclass
from typing import List, Optional, Sequence

from projects.common.cli import cuda_available
from projects.common.jobs import (
    REPO_ROOT,
    Progress,
    done_path,
    is_done,
    mark_done,
    preset_with_overrides,
    run_logged,
    utc_stamp,
)

PRETRAIN_CFG = osp.join(REPO_ROOT, 'configs/demo/posfield_vit-mini-p16_demo-pool.py')
BASELINE_PRETRAIN_CFG = osp.join(REPO_ROOT, 'configs/demo/dinov2-dagger_vit-mini-p16_demo-pool.py')
DET_CFG = osp.join(REPO_ROOT, 'configs/demo/mask-rcnn_vit-mini-p16_demo-coco.py')
BASELINE_DET_CFG = osp.join(REPO_ROOT, 'configs/demo/mask-rcnn_vit-mini-p16-dinov2-dagger_demo-coco.py')
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
STAGE_ECHO = ('coco/bbox_mAP:', 'loaded ', 'Error', 'error:', '[prepare]', '[dense-probe]', 'written')


@dataclass
class JobInputs:
    """What every stage of one run of the job computes with (paths absolute)."""
    work_dir: str
    unlabeled: str  # the pre-training images
    coco_root: str  # the COCO-format folder of the probes and detection
    classes: List[str]
    preset: dict  # the preset with the command line's overrides
    pretrain_options: List[str]  # extra --cfg-options of both pre-training configs
    detection: bool
    workers: int


def run(cmd, log_path, progress=None, stage=None, echo=STAGE_ECHO):
    """Run a command, keep its full output in log_path, echo the key lines and report mmengine's iterations."""
    run_logged(cmd, log_path, REPO_ROOT, echo, on_line=progress.watch(stage) if progress is not None else None)


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


def plan(job: JobInputs, seeds, baseline):
    """Every stage of the job, in order: dict(name, kind, units (iterations or 1), folder, settings, ...)."""
    preset = job.preset
    stages = []
    pre = [('posfield', PRETRAIN_CFG, DET_CFG)]
    if baseline:
        pre.append(('dinov2-dagger', BASELINE_PRETRAIN_CFG, BASELINE_DET_CFG))
    probe = dict(img_size=preset['probe_img_size'], epochs=preset['probe_epochs'], coco=job.coco_root)
    for seed in seeds:
        sd = osp.join(job.work_dir, f'seed_{seed}')
        for name, cfg, det_cfg in pre:
            folder = osp.join(sd, f'pretrain_{name}')
            settings = dict(cfg=cfg, unlabeled=job.unlabeled, iters=preset['pretrain_iters'],
                            batch=preset['pretrain_batch'], seed=seed, options=job.pretrain_options)
            stages.append(dict(name=f'pretrain {name} (seed {seed})', kind='pretrain', units=preset['pretrain_iters'],
                               folder=folder, settings=settings, cfg=cfg, seed=seed, init=name))
            stages.append(dict(name=f'probe {name} (seed {seed})', kind='probe', units=1, init=name, seed=seed,
                               folder=osp.join(sd, f'probe_{name}'), backbone=osp.join(folder, 'backbone.pth'),
                               cfg=cfg, settings=dict(probe, backbone=osp.join(folder, 'backbone.pth'), seed=seed)))
            if job.detection:
                # settings name what the stage computes (backbone, data, iterations, seed); the config file is
                # where the detector is written down, so moving a delta into a config keeps finished stages done
                stages.append(dict(name=f'detection {name} (seed {seed})', kind='det', units=preset['det_iters'],
                                   folder=osp.join(sd, f'det_{name}'), backbone=osp.join(folder, 'backbone.pth'),
                                   cfg=det_cfg, seed=seed, init=name,
                                   settings=dict(coco=job.coco_root, iters=preset['det_iters'], seed=seed,
                                                 backbone=osp.join(folder, 'backbone.pth'))))
        stages.append(dict(name=f'probe random init + floors (seed {seed})', kind='probe', units=1, init='random',
                           folder=osp.join(sd, 'probe_random'), cfg=PRETRAIN_CFG, backbone=None, seed=seed,
                           settings=dict(probe, cfg=PRETRAIN_CFG, seed=seed, options=job.pretrain_options)))
        if job.detection:
            stages.append(dict(name=f'detection random init (seed {seed})', kind='det', units=preset['det_iters'],
                               folder=osp.join(sd, 'det_random'), backbone=None, cfg=DET_CFG, seed=seed, init='random',
                               settings=dict(coco=job.coco_root, iters=preset['det_iters'], seed=seed)))
    return stages


def run_stage(stage, job: JobInputs, progress):
    """Run one stage's commands; returns the files that make it complete."""
    folder, seed, preset = stage['folder'], stage['seed'], job.preset
    os.makedirs(folder, exist_ok=True)
    if stage['kind'] == 'pretrain':
        iters = preset['pretrain_iters']
        opts = pretrain_options(job.unlabeled, iters, preset['pretrain_batch'], job.workers, seed)
        opts += job.pretrain_options
        run([sys.executable, 'tools/train.py', stage['cfg'], '--work-dir', folder, '--cfg-options', *opts],
            osp.join(folder, 'stage.log'), progress, stage)
        backbone = osp.join(folder, 'backbone.pth')
        run([sys.executable, 'tools/model_converters/extract_backbone.py', osp.join(folder, f'iter_{iters}.pth'),
             backbone, '--key', 'teacher'], osp.join(folder, 'extract.log'), echo=('backbone tensors', ))
        return [osp.join(folder, f'iter_{iters}.pth'), backbone]
    if stage['kind'] == 'probe':
        out = osp.join(folder, 'probe.json')
        model = stage['backbone'] or stage['cfg']
        cmd = [sys.executable, 'tools/analysis/dense_probe.py', model, '--coco', job.coco_root, '--out', out,
               '--seed', str(seed), '--img-size', str(preset['probe_img_size']),
               '--epochs', str(preset['probe_epochs']), '--name', stage['init']]
        # every row runs without [CLS], as the detector does; a teacher's config (as trained, with
        # --pretrain-options) is read from its checkpoint
        cmd.append('--without-cls')
        if not stage['backbone']:
            cmd += ['--floors'] + (['--cfg-options'] + job.pretrain_options if job.pretrain_options else [])
        run(cmd, osp.join(folder, 'stage.log'), progress, stage)
        return [out]
    iters = preset['det_iters']
    bb = stage['backbone']
    opts = det_options(job.coco_root, job.classes, iters, job.workers) + [f'randomness.seed={seed}']
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
    predictor's), and the learning rate of each linear probe measure: one for every backbone row of the table
    (ours, DINOv2-dagger and random init of every seed), the floor rows at their own cross-validated choice
    (:func:`projects.probes.dense.backbone_rows_at_shared_lrs`)."""
    from projects.probes.dense import backbone_rows_at_shared_lrs
    rows = {(init, seed): dict(init=init, seed=seed) for seed in seeds for init in inits}
    row_init = {'posfield': 'posfield (ours)', 'dinov2-dagger': 'DINOv2-dagger', 'random': 'random init'}
    probes = []  # (stage, the rows of its probe.json: the probed backbone first, then any floors)
    for st in stages:
        if st['kind'] == 'det':
            with open(osp.join(st['folder'], 'metrics.json')) as f:
                metrics = json.load(f)['metrics']
            rows[(row_init[st['init']], st['seed'])].update({k: metrics.get(f'coco/{k}') for k in METRIC_KEYS})
        elif st['kind'] == 'probe':
            with open(osp.join(st['folder'], 'probe.json')) as f:
                probes.append((st, json.load(f)['rows']))
    lrs, read = backbone_rows_at_shared_lrs([probe_rows for _, probe_rows in probes])
    for (st, _), probe_rows in zip(probes, read):
        for i, r in enumerate(probe_rows):
            init = row_init.get(st['init']) if i == 0 else r['name']
            rows[(init, st['seed'])].update(patch_miou=r['patch']['miou'],
                                            fg_miou=(r.get('foreground') or {}).get('miou'),
                                            crop_knn_top1=(r.get('crop_knn') or {}).get('top1'),
                                            box_iou=(r.get('box') or {}).get('mean_iou'),
                                            box_iou50=(r.get('box') or {}).get('iou50_rate'))
    return [rows[(init, seed)] for init in inits for seed in seeds], lrs


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


def data_description(job: JobInputs, own_pool, own_coco):
    """What the table was computed on: the user's folder names and class count, or the demo data by name."""
    classes = job.classes
    if own_coco:
        det = (f'{osp.basename(job.coco_root.rstrip("/"))}/ val split ({len(classes)} classes: '
               f'{", ".join(classes[:8])}{", ..." if len(classes) > 8 else ""})')
    else:
        det = f'demo val set (synthetic composition on real photos, {len(classes)} classes)'
    pool = f'{osp.basename(job.unlabeled.rstrip("/"))}/' if own_pool else 'the demo pool of real photos'
    return f'{det}; pre-trained on {pool}'


def run_default_job(preset: str = 'default', work_dir: str = osp.join('work_dirs', 'default_job'),
                    data_root: str = osp.join('data', 'demo'), unlabeled: Optional[str] = None,
                    coco: Optional[str] = None, with_baseline: bool = False, pretrain_iters: Optional[int] = None,
                    det_iters: Optional[int] = None, detection: bool = True, pretrain_options: Sequence[str] = (),
                    probe_img_size: Optional[int] = None, workers: int = 2, seeds: Optional[List[int]] = None,
                    report: bool = True) -> dict:
    """Run (or resume) the job in ``work_dir``: the demo data unless both ``unlabeled`` and ``coco`` are given,
    every stage of :func:`plan` not done already, then summary.json, the table on stdout and report.html. Returns
    the summary. ``preset`` names one of :data:`PRESETS`; the other arguments are tools/run_default_job.py's."""
    name = preset
    preset = preset_with_overrides(PRESETS, name, pretrain_iters=pretrain_iters, det_iters=det_iters,
                                   probe_img_size=probe_img_size)
    seeds = seeds or preset['seeds']
    baseline = with_baseline or preset['baseline']
    wd = osp.abspath(work_dir)
    os.makedirs(wd, exist_ok=True)
    started = time.time()

    own_pool, own_coco = unlabeled is not None, coco is not None
    source = 'your folders' if own_pool and own_coco else 'demo data (tools/data/prepare_demo_data.py)'
    print(f'[stage 0] data: {source}', flush=True)
    if not (own_pool and own_coco):
        data_root = osp.abspath(data_root)
        run([sys.executable, 'tools/data/prepare_demo_data.py', '--data-root', data_root, '--quiet',
             '--num-train', str(preset['num_train']), '--num-val', str(preset['num_val'])],
            osp.join(wd, 'data.log'), echo=('[prepare]', '[demo-data]', 'Error', 'error'))
    unlabeled = osp.abspath(unlabeled if own_pool else osp.join(data_root, 'unlabeled'))
    coco_root = osp.abspath(coco if own_coco else osp.join(data_root, 'coco'))
    with open(coco_paths(coco_root)['train']) as f:
        classes = [c['name'] for c in sorted(json.load(f)['categories'], key=lambda c: c['id'])]
    job = JobInputs(work_dir=wd, unlabeled=unlabeled, coco_root=coco_root, classes=classes, preset=preset,
                    pretrain_options=list(pretrain_options), detection=detection, workers=workers)

    stages = plan(job, seeds, baseline)
    for st in stages:
        st['done'] = is_done(st['folder'], st['settings'])
    progress = Progress(stages, PRIOR_SEC_PER_ITER, started)
    for st in stages:
        progress.begin(st)
        if st['done']:
            continue
        t = time.time()
        outputs = run_stage(st, job, progress)
        mark_done(st['folder'], st['settings'], outputs, time.time() - t)
        progress.end(st)

    inits = ['posfield (ours)'] + (['DINOv2-dagger'] if baseline else []) + ['random init', 'raw pixels',
                                                                             'all background']
    rows, probe_lrs = collect(stages, seeds, inits)
    table, paired = aggregate(rows, inits, seeds)
    stage_minutes = {}
    for st in stages:
        with open(done_path(st['folder'])) as f:
            stage_minutes[osp.relpath(st['folder'], wd)] = round(json.load(f)['seconds'] / 60, 1)
    summary = dict(
        preset=name, seeds=seeds,
        iterations=dict(pretrain=preset['pretrain_iters'], detection=preset['det_iters'] if detection else None),
        probe=dict(img_size=preset['probe_img_size'], epochs=preset['probe_epochs'], shared_lr=probe_lrs),
        date=utc_stamp(),
        hardware=f'{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, no GPU'
        if not cuda_available() else 'CUDA', minutes_this_run=round((time.time() - started) / 60, 1),
        minutes_all_stages=round(sum(stage_minutes.values()), 1), stage_minutes=stage_minutes,
        data=dict(unlabeled=unlabeled, coco=coco_root, classes=classes,
                  description=data_description(job, own_pool, own_coco),
                  note='user data' if own_coco else
                  'detection data: synthetic shapes composed on real photographs (docs/demo_data.md)'),
        results=rows, mean_std=table, paired_differences=paired)
    with open(osp.join(wd, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    print(format_table(summary))
    if report:
        from projects.report import build_report
        print(f'report: {build_report(wd)}', flush=True)
    return summary


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
             f"{summary['hardware']}, {summary['minutes_all_stages']} min of stages"]
    shared = (summary.get('probe') or {}).get('shared_lr')
    if shared:
        lines.append('backbone rows probed at one learning rate per measure (best mean hold-out; the floors at '
                     'their own): ' + ', '.join(f'{m} {lr:g}' for m, lr in shared.items()))
    lines += [head, '-' * len(head)]
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
