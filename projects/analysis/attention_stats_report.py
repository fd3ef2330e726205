"""Attention statistics of pre-trained ViTs over an image set: NMI between attention clusters and instance
masks, and the mean attention distance of every head of every block; several models into one JSON and figure.

Definitions (docs/analysis.md): per image, the patches' features (default: the [CLS] query's attention to the
patch in every head of the chosen block) are clustered by k-means with k = the number of segments of the
image's patch-level instance partition (background + instances); NMI compares the two partitions; the reported
NMI is the mean over images. Mean attention distance: per head, sum_j a_ij * ||c_i - c_j|| (pixels), averaged
over patch queries and images. The maths is :mod:`.attention_stats`'s; ``tools/analysis/attention_stats.py`` is
the command line.
"""
import json
import os
import os.path as osp
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import torch

Box = Optional[Tuple[float, float, float, float]]


def coco_items(ann_file, img_dir, max_images):
    """[(image path, (M, H, W) bool instance masks)] for the first ``max_images`` images (by id) with at
    least one non-crowd instance."""
    if not osp.isfile(ann_file):
        raise FileNotFoundError(f'--ann-file not found: {ann_file}')
    from pycocotools.coco import COCO
    coco = COCO(ann_file)
    items = []
    for img_id in sorted(coco.getImgIds()):
        anns = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=img_id, iscrowd=False)) if a.get('area', 1) > 0]
        if not anns:
            continue
        info = coco.loadImgs(img_id)[0]
        path = osp.join(img_dir, info['file_name'])
        if not osp.isfile(path):
            raise FileNotFoundError(f'{ann_file} lists {info["file_name"]}, not found under --img-dir {img_dir}')
        items.append((path, lambda anns=anns: np.stack([coco.annToMask(a) for a in anns]).astype(bool)))
        if len(items) >= max_images:
            break
    if not items:
        raise ValueError(f'{ann_file}: no image with a non-crowd instance annotation')
    return items


def measure(model, items, want_nmi: bool, want_dist: bool, box: Box = None, img_size: Optional[int] = None,
            nmi_layer: int = -1, nmi_features: str = 'cls-attn', k: int = 0, seed: int = 0, num_examples: int = 4,
            device='cpu'):
    """Distances (L, H) and per-image NMI records of one model (a loaded backbone) on ``items``
    (:func:`coco_items`, or ``(path, None)`` pairs for the distance only). ``box``: the canvas window of the
    images in a position-field backbone; the other arguments are the tool's options of the same names."""
    from tqdm import tqdm

    from .attention_recorder import AttentionRecorder
    from .attention_stats import attention_distance, cls_attention_features, cluster_nmi, masks_to_patch_labels
    from .encoding import encode
    from .visual import load_rgb, to_input
    size = img_size or model.img_size
    if size % model.patch_size:
        raise ValueError(f'--img-size {size} is not a multiple of the patch size {model.patch_size}')
    grid = (size // model.patch_size,) * 2
    n_pre = model.num_prefix_tokens
    n_layers = len(model.backbone.layers)
    nmi_layer = nmi_layer + n_layers if nmi_layer < 0 else nmi_layer
    layers = list(range(n_layers)) if want_dist else [nmi_layer]
    dist_sum, n_img, records = None, 0, []
    with AttentionRecorder(model.backbone, layers) as rec:
        for idx, (path, masks_fn) in enumerate(tqdm(items, desc=model.info.get('label', 'model'), unit='img')):
            x, arr = to_input(load_rgb(path), (size, size), model.mean, model.std)
            _, patches = encode(model.backbone, x.to(device), box)
            if want_dist:
                d = torch.stack([attention_distance(rec.attn[i], grid, model.patch_size, n_pre)[0] for i in layers])
                dist_sum = d if dist_sum is None else dist_sum + d
                n_img += 1
            if want_nmi and masks_fn is not None:
                gt = masks_to_patch_labels(torch.from_numpy(masks_fn()), grid)
                segments = int(torch.unique(gt).numel())
                if segments < 2:  # one segment: NMI is degenerate (no instance covers a majority of any patch)
                    records.append(dict(image=path, nmi=None, segments=segments))
                    continue
                if nmi_features == 'cls-attn':
                    feats = cls_attention_features(rec.attn[nmi_layer][0], n_pre)
                else:
                    if nmi_layer != n_layers - 1:
                        raise ValueError("--nmi-features tokens uses the last block's output; leave --nmi-layer -1")
                    feats = torch.nn.functional.normalize(patches[0].float().cpu(), dim=-1)
                value, pred = cluster_nmi(feats, gt, k or None, seed)
                record = dict(image=path, nmi=value, segments=segments, clusters=int(pred.max()) + 1)
                if idx < num_examples:  # pictures only for the images drawn in nmi_examples.png
                    record.update(_gt=gt.view(grid).numpy(), _pred=pred.view(grid).numpy(), _img=arr)
                records.append(record)
            rec.clear()
    dist = (dist_sum / max(n_img, 1)).tolist() if want_dist else None
    return dist, records


def plot_distance(path, results):
    from .visual import pyplot, save_figure
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    colours = plt.rcParams['axes.prop_cycle'].by_key()['color']
    for j, (label, res) in enumerate(results.items()):
        d = np.asarray(res['mean_attention_distance']['per_layer_head'])  # (L, H)
        c = colours[j % len(colours)]
        layers = np.arange(d.shape[0])
        for h in range(d.shape[1]):
            ax.scatter(layers + 0.06 * (j - (len(results) - 1) / 2), d[:, h], s=8, color=c, alpha=0.45)
        ax.plot(layers, d.mean(1), '-o', color=c, label=f'{label} (mean of heads)', markersize=4)
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel('block')
    ax.set_ylabel('mean attention distance (pixels)')
    ax.set_title('mean attention distance per block (dots: heads)')
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_nmi(path, results):
    from .visual import pyplot, save_figure
    plt = pyplot()
    labels = list(results)
    means = [results[k]['nmi']['mean'] for k in labels]
    stds = [results[k]['nmi']['std'] for k in labels]
    fig, ax = plt.subplots(figsize=(1.6 + 1.2 * len(labels), 3.6))
    ax.bar(range(len(labels)), means, yerr=stds, capsize=4, color='tab:blue', alpha=0.8)
    for i, m in enumerate(means):
        ax.text(i, m + 0.01, f'{m:.3f}', ha='center', va='bottom', fontsize=8)
    ax.set_xticks(range(len(labels)), labels, rotation=20, fontsize=8)
    ax.set_ylabel('NMI (mean over images, +- std)')
    ax.set_ylim(0, 1)
    ax.set_title('attention clusters vs instance masks')
    return save_figure(fig, path)


def plot_examples(path, records_by_model, num):
    from .visual import pyplot, save_figure
    plt = pyplot()
    labels = list(records_by_model)
    first = [r for r in records_by_model[labels[0]] if r['nmi'] is not None and '_img' in r][:num]
    if not first:
        return None
    fig, axes = plt.subplots(len(first), 2 + len(labels), figsize=(2.2 * (2 + len(labels)), 2.2 * len(first)),
                             squeeze=False)
    for row, rec in enumerate(first):
        axes[row][0].imshow(rec['_img'])
        axes[row][1].imshow(rec['_gt'], cmap='tab20', interpolation='nearest')
        axes[row][1].set_title('instances (patches)', fontsize=8)
        for j, label in enumerate(labels):
            other = next(r for r in records_by_model[label] if r['image'] == rec['image'])
            axes[row][2 + j].imshow(other['_pred'], cmap='tab20', interpolation='nearest')
            axes[row][2 + j].set_title(f'{label}: NMI {other["nmi"]:.2f}', fontsize=8)
        for ax in axes[row]:
            ax.axis('off')
    return save_figure(fig, path)


def write_attention_stats(specs: Sequence[Tuple[str, str]], labels: Optional[Sequence[str]], items, out_dir: str,
                          want_nmi: bool, want_dist: bool, key: str = 'teacher',
                          box_for: Callable[[object], Box] = lambda cfg: None, img_size: Optional[int] = None,
                          nmi_layer: int = -1, nmi_features: str = 'cls-attn', k: int = 0, seed: int = 0,
                          num_examples: int = 4, device='cpu', settings: Optional[dict] = None) -> dict:
    """Measure every ``(config, checkpoint)`` of ``specs`` on ``items`` (see :func:`measure`); write
    ``attention_stats.json`` and the figures into ``out_dir``; return the JSON's content.

    ``labels``: one name per model (None: the checkpoint file names); ``box_for(cfg)``: a config's canvas window;
    ``settings``: recorded in the JSON as given."""
    from projects.common.backbone_loader import load_backbone
    labels = labels or [osp.splitext(osp.basename(ck))[0] for _, ck in specs]
    if len(set(labels)) != len(labels):
        labels = [f'{i}:{label}' for i, label in enumerate(labels)]
    results, records_by_model = {}, {}
    for (cfg, ckpt), label in zip(specs, labels):
        model = load_backbone(cfg, ckpt, key, device)
        model.info['label'] = label
        print(f'{label}: loaded {model.source}')
        dist, records = measure(model, items, want_nmi, want_dist, box_for(model.cfg), img_size, nmi_layer,
                                nmi_features, k, seed, num_examples, device)
        res = dict(config=cfg, checkpoint=ckpt, key=key, source=model.source, patch_size=model.patch_size,
                   img_size=img_size or model.img_size, num_images=len(items))
        if dist is not None:
            d = np.asarray(dist)
            res['mean_attention_distance'] = dict(per_layer_head=d.tolist(), per_layer_mean=d.mean(1).tolist(),
                                                  unit='pixels of the input')
        if want_nmi:
            vals = [r['nmi'] for r in records if r['nmi'] is not None]
            res['nmi'] = dict(mean=float(np.mean(vals)) if vals else None, std=float(np.std(vals)) if vals else None,
                              num_images=len(vals), skipped_single_segment=len(records) - len(vals),
                              layer=nmi_layer, features=nmi_features, k=k or 'segments',
                              per_image=[{n: v for n, v in r.items() if not n.startswith('_')} for r in records])
        results[label] = res
        records_by_model[label] = records
    os.makedirs(out_dir, exist_ok=True)
    files = {}
    if want_dist:
        files['attention_distance'] = plot_distance(osp.join(out_dir, 'attention_distance.png'), results)
    if want_nmi and all(r['nmi']['mean'] is not None for r in results.values()):
        files['nmi'] = plot_nmi(osp.join(out_dir, 'nmi.png'), results)
        ex = plot_examples(osp.join(out_dir, 'nmi_examples.png'), records_by_model, num_examples)
        if ex:
            files['nmi_examples'] = ex
    summary = dict(models=results, files=files, settings=settings)
    out_json = osp.join(out_dir, 'attention_stats.json')
    with open(out_json, 'w') as f:
        json.dump(summary, f, indent=2)
    for label, res in results.items():
        line = [f'{label}:']
        if 'nmi' in res:
            n = res['nmi']
            line.append(f'NMI {n["mean"]:.4f} +- {n["std"]:.4f} over {n["num_images"]} images' if n['mean'] is not None
                        else 'NMI: no image with >= 2 segments')
        if 'mean_attention_distance' in res:
            line.append('attention distance per block (px): '
                        + ' '.join(f'{v:.1f}' for v in res['mean_attention_distance']['per_layer_mean']))
        print('  '.join(line))
    print(f'wrote {out_json} and {", ".join(files.values())}')
    return summary
