"""Build ``<work_dir>/report.html`` from a finished default job (see the package docstring)."""
import base64
import glob
import html
import io
import json
import os
import os.path as osp
from collections import defaultdict
from typing import Dict, List, Optional

COLUMNS = (('patch mIoU', 'patch_miou', 1.0), ('foreground mIoU', 'fg_miou', 1.0),
           ('crop k-NN top-1', 'crop_knn_top1', 1.0), ('box IoU (localisation)', 'box_iou', 1.0),
           ('box IoU ≥ 0.5 rate', 'box_iou50', 1.0),
           ('AP box', 'bbox_mAP', 100.0), ('AP50 box', 'bbox_mAP_50', 100.0), ('AP mask', 'segm_mAP', 100.0),
           ('AP50 mask', 'segm_mAP_50', 100.0))


def data_uri(path_or_bytes, mime: Optional[str] = None) -> str:
    if isinstance(path_or_bytes, (bytes, bytearray)):
        data, mime = bytes(path_or_bytes), mime or 'image/png'
    else:
        with open(path_or_bytes, 'rb') as f:
            data = f.read()
        ext = osp.splitext(path_or_bytes)[1].lower()
        mime = mime or {'.jpg': 'image/jpeg', '.jpeg': 'image/jpeg'}.get(ext, 'image/png')
    return f'data:{mime};base64,' + base64.b64encode(data).decode('ascii')


def _fig_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=90, bbox_inches='tight')
    import matplotlib.pyplot as plt
    plt.close(fig)
    return buf.getvalue()


def _img(uri: str, alt: str, width: Optional[int] = None) -> str:
    style = f' style="max-width:{width}px"' if width else ''
    return f'<img src="{uri}" alt="{html.escape(alt)}"{style}>'


def _fmt(stat, scale):
    if not stat:
        return '–'
    if stat['n'] > 1:
        return f"{scale * stat['mean']:.2f} ± {scale * stat['std']:.2f}"
    return f"{scale * stat['mean']:.2f}"


def results_table(summary: Dict) -> str:
    head = ''.join(f'<th>{html.escape(c[0])}</th>' for c in COLUMNS)
    rows = [f'<tr><th>initialisation</th>{head}</tr>']
    for init, stats in summary['mean_std'].items():
        cells = ''.join(f'<td>{_fmt(stats.get(k), s)}</td>' for _, k, s in COLUMNS)
        rows.append(f'<tr><td>{html.escape(init)}</td>{cells}</tr>')
    for other, diffs in summary.get('paired_differences', {}).items():
        if diffs:
            cells = ''.join(f'<td>{_fmt(diffs.get(k), s)}</td>' for _, k, s in COLUMNS)
            rows.append(f'<tr class="diff"><td>ours − {html.escape(other)} (paired)</td>{cells}</tr>')
    per_seed = []
    for init_row in summary['results']:
        cells = ''.join(f'<td>{"–" if init_row.get(k) is None else f"{s * init_row[k]:.2f}"}</td>'
                        for _, k, s in COLUMNS)
        per_seed.append(f'<tr><td>{html.escape(init_row["init"])}</td><td>{init_row["seed"]}</td>{cells}</tr>')
    return ('<table>' + ''.join(rows) + '</table>'
            '<details><summary>every seed</summary><table>'
            f'<tr><th>initialisation</th><th>seed</th>{head}</tr>' + ''.join(per_seed) + '</table></details>')


def read_scalars(path: str) -> List[Dict]:
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    return out


def loss_curves(wd: str) -> Optional[bytes]:
    """One panel per stage (pretrain_posfield, det_random, ...), one line per seed, every logged loss key."""
    from projects.analysis.visual import pyplot
    series = defaultdict(lambda: defaultdict(list))  # stage -> (seed, key) -> [(x, y)]
    for path in sorted(glob.glob(osp.join(wd, 'seed_*', '*', '*', 'vis_data', 'scalars.json'))):
        rel = osp.relpath(path, wd).split(os.sep)
        seed, stage = rel[0], rel[1]
        for rec in read_scalars(path):
            x = rec.get('iter', rec.get('step'))
            for k, v in rec.items():
                if k.startswith('loss') and isinstance(v, (int, float)) and x is not None:
                    series[stage][(seed, k)].append((x, v))
    series = {s: v for s, v in series.items() if v}
    if not series:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(series), figsize=(4.6 * len(series), 3.4), squeeze=False)
    for ax, (stage, lines) in zip(axes[0], sorted(series.items())):
        for (seed, key), pts in sorted(lines.items()):
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=1.4 if key == 'loss' else 0.8,
                    marker='o' if len(pts) < 10 else None, ms=3, label=f'{key} ({seed})')
        ax.set_title(stage, fontsize=10)
        ax.set_xlabel('iteration')
        ax.legend(fontsize=6)
    return _fig_png(fig)


def val_images(wd: str, seed_dir: str, per_row: int = 3) -> List[tuple]:
    """(stage, [image paths]) of the detection stages' --show-dir pictures (GT left, prediction right)."""
    out = []
    for det in sorted(glob.glob(osp.join(seed_dir, 'det_*'))):
        pics = sorted(p for p in glob.glob(osp.join(det, '*', 'vis', '*')) if p.lower().endswith(('.jpg', '.png')))
        if pics:
            out.append((osp.basename(det), pics[:per_row]))
    return out


def _pretrained(seed_dir: str) -> List[Dict]:
    """The pre-training stages of one seed: dict(name, cfg, checkpoint)."""
    found = []
    for folder in sorted(glob.glob(osp.join(seed_dir, 'pretrain_*'))):
        done = osp.join(folder, 'done.json')
        if not osp.isfile(done):
            continue
        with open(done) as f:
            d = json.load(f)
        ckpt = [p for p in d['outputs'] if osp.basename(p).startswith('iter_')]
        if ckpt:
            found.append(dict(name=osp.basename(folder)[len('pretrain_'):], cfg=d['settings']['cfg'],
                              checkpoint=ckpt[0]))
    return found


def attention_figures(pretrained: List[Dict], images: List[str], out_dir: str, seed: int = 0) -> List[str]:
    """[CLS] attention of the last block: one figure per image, one row per backbone plus random init."""
    import torch

    from projects.common.backbone_loader import load_backbone
    if not pretrained or not images:
        return []
    from projects.analysis.attention_maps import attention_maps, draw
    models, labels = [], []
    for p in pretrained:
        models.append(load_backbone(p['cfg'], p['checkpoint']))
        labels.append(f"{p['name']} (teacher)")
    torch.manual_seed(seed)
    models.append(load_backbone(pretrained[0]['cfg'], None))
    labels.append('random init')
    results = []
    for m in models:  # the whole canvas (box None), as the detector places its input
        g = m.img_size // m.patch_size
        results.append(attention_maps(m, images, [(g // 2, g // 2)], layer=-1, box=None, device='cpu'))
    os.makedirs(out_dir, exist_ok=True)
    return [draw(osp.join(out_dir, f'attn_{i}.png'), i, results, labels, [m.patch_size for m in models])
            for i in range(len(images))]


def field_figure(pretrained: List[Dict], out_dir: str) -> Optional[str]:
    ours = [p for p in pretrained if p['name'] == 'posfield']
    if not ours:
        return None
    from projects.posfield.evaluation.position_field import position_field_figures
    position_field_figures(ours[0]['cfg'], ours[0]['checkpoint'], det_size=256, out_dir=out_dir)
    path = osp.join(out_dir, 'position_field_pca.png')
    return path if osp.isfile(path) else None


CSS = """body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #bbb;padding:4px 8px;text-align:right}td:first-child{text-align:left}
tr.diff td{background:#eef6ee}img{max-width:100%;border:1px solid #ddd;margin:4px}.note{color:#555}"""


def build_report(wd: str, max_images: int = 3) -> str:
    """Write ``wd/report.html`` and return its path."""
    wd = osp.abspath(wd)
    with open(osp.join(wd, 'summary.json')) as f:
        summary = json.load(f)
    assets = osp.join(wd, 'report_assets')
    seed_dir = osp.join(wd, f'seed_{summary["seeds"][0]}')
    parts = [f'<h1>Default job ({html.escape(summary["preset"])})</h1>',
             f'<p>{html.escape(summary["data"]["description"])}. Seeds {summary["seeds"]}; {summary["date"]}; '
             f'{html.escape(summary["hardware"])}; {summary["minutes_all_stages"]} min of stages. '
             f'Pre-training {summary["iterations"]["pretrain"]} iterations, detection '
             f'{summary["iterations"]["detection"]}. Dense probes: linear per-patch classifier (mIoU over classes '
             f'incl. background), weighted k-NN on instance crops, and a linear localisation probe (distances '
             f'to the four box edges from each patch inside an instance: mean IoU of the decoded boxes, and the '
             f'share of instances whose median box reaches IoU 0.5; on the all-background row, the mean training '
             f'targets), frozen last-layer patch tokens at {summary["probe"]["img_size"]} px '
             f'(docs/evidence.md).</p>',
             f'<p class="note">{html.escape(summary["data"]["note"])}</p>', '<h2>Results</h2>',
             results_table(summary)]
    curves = loss_curves(wd)
    parts.append('<h2>Loss curves</h2>')
    parts.append(_img(data_uri(curves), 'loss curves') if curves else '<p>no logged losses</p>')
    parts.append('<h2>Validation images (ground truth left, prediction right)</h2>')
    shown = val_images(wd, seed_dir, max_images)
    for stage, pics in shown:
        parts.append(f'<h3>{html.escape(stage)}</h3>' + ''.join(_img(data_uri(p), f'{stage} {osp.basename(p)}', 600)
                                                               for p in pics))
    if not shown:
        parts.append('<p>no detection stage in this job</p>')
    coco_val = osp.join(summary['data']['coco'], 'val')
    images = sorted(glob.glob(osp.join(coco_val, '*.jpg')) + glob.glob(osp.join(coco_val, '*.png')))[:max_images]
    pretrained = _pretrained(seed_dir)
    parts.append('<h2>[CLS] attention (last block, seed {})</h2>'.format(summary['seeds'][0]))
    for p in attention_figures(pretrained, images, osp.join(assets, 'attention')):
        parts.append(_img(data_uri(p), osp.basename(p)))
    parts.append('<h2>Learned position field (PCA of the channels as RGB)</h2>')
    field = field_figure(pretrained, osp.join(assets, 'field'))
    parts.append(_img(data_uri(field), 'position field PCA') if field else '<p>no position-field checkpoint</p>')
    page = ('<!DOCTYPE html><html><head><meta charset="utf-8"><title>Default job report</title>'
            f'<style>{CSS}</style></head><body>' + '\n'.join(parts) + '</body></html>')
    out = osp.join(wd, 'report.html')
    tmp = out + '.tmp'
    with open(tmp, 'w', encoding='utf-8') as f:
        f.write(page)
    os.replace(tmp, out)
    return out
