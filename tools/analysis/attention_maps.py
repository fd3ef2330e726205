"""Draw what a pre-trained ViT attends to: the [CLS] query's attention in every head of one block, and the
attention of chosen patches, overlaid on the input images. One checkpoint, or two side by side.

    python tools/analysis/attention_maps.py CONFIG CHECKPOINT --images demo/ --out-dir work_dirs/attn
    python tools/analysis/attention_maps.py CONFIG CKPT --config2 CONFIG_B --checkpoint2 CKPT_B \\
        --labels posfield dinov2-dagger --images a.jpg b.jpg --query-patch 7 7 --query-patch 3 10

Writes ``attn_<image>.png`` per image (one row per checkpoint: image, [CLS] attention averaged over heads,
each head, then each query patch's head-averaged attention with the query marked), ``attention_maps.json``
(settings, files, per-head entropy of the [CLS] attention) and ``attention_maps.npz`` (the raw maps).
Weights are recomputed from each block's qkv projection by a forward hook (see docs/analysis.md).
"""
import argparse
import json
import os
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import numpy as np  # noqa: E402
import torch  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Attention maps of a pre-trained ViT ([CLS] per head and from chosen patches), overlaid on '
                    'images; optionally two checkpoints side by side.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('config', help='pre-training config the checkpoint was trained with (its model.backbone is built)')
    p.add_argument('checkpoint', help='PosFieldSSL checkpoint (or any mmpretrain/backbone-only checkpoint)')
    p.add_argument('--key', choices=['teacher', 'student'], default='teacher',
                   help='which weights of a PosFieldSSL checkpoint: the EMA teacher or the student')
    p.add_argument('--config2', help='config of a second model to show below the first')
    p.add_argument('--checkpoint2', help='checkpoint of the second model')
    p.add_argument('--key2', choices=['teacher', 'student'], help='weights of the second model (default: --key)')
    p.add_argument('--labels', nargs='+', help='row titles, one per model (default: checkpoint file names)')
    p.add_argument('--images', nargs='+', required=True, help='image files and/or folders (searched recursively)')
    p.add_argument('--max-images', type=int, default=8, help='use at most this many images')
    p.add_argument('--img-size', type=int, nargs='+',
                   help='input size: S (square) or H W, multiples of the patch size (default: the config\'s img_size)')
    p.add_argument('--layer', type=int, default=-1, help='block whose attention is drawn (negative: from the end)')
    p.add_argument('--query-patch', type=int, nargs=2, action='append', metavar=('ROW', 'COL'),
                   help='patch (row, col) on the patch grid whose attention is drawn; repeatable '
                        '(default: the centre patch)')
    p.add_argument('--placement', choices=['whole', 'mean'], default='mean',
                   help='canvas window of the image for position-field backbones: the mean pre-training placement '
                        '(default, near the training statistics) or the whole canvas (as the detector)')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--out-dir', default='work_dirs/analysis/attention_maps', help='where PNG/JSON/NPZ files go')
    args = p.parse_args(argv)
    if (args.config2 is None) != (args.checkpoint2 is None):
        p.error('--config2 and --checkpoint2 go together')
    n_models = 1 + (args.config2 is not None)
    if args.labels and len(args.labels) != n_models:
        p.error(f'--labels needs {n_models} names (one per model), got {len(args.labels)}')
    if args.img_size and len(args.img_size) not in (1, 2):
        p.error('--img-size takes S or H W')
    return args


def _input_size(args, model):
    if not args.img_size:
        return model.img_size, model.img_size
    h, w = (args.img_size * 2)[:2]
    p = model.patch_size
    if h % p or w % p:
        raise ValueError(f'--img-size {h}x{w} is not a multiple of the patch size {p}')
    return h, w


def _entropy(p: np.ndarray) -> float:
    p = p / max(p.sum(), 1e-12)
    nz = p[p > 0]
    return float(-(nz * np.log(nz)).sum())


def run_model(model, images, args, queries):
    """Maps of one model for every image: dict(cls (n_img, H, h, w), query (n_img, Q, h, w), grid)."""
    from tqdm import tqdm

    from projects.analysis.attention_recorder import AttentionRecorder
    from projects.analysis.encoding import encode
    from projects.analysis.visual import load_rgb, to_input
    from projects.posfield.evaluation import canvas_box_for
    size = _input_size(args, model)
    h, w = size[0] // model.patch_size, size[1] // model.patch_size
    for r, c in queries:
        if not (0 <= r < h and 0 <= c < w):
            raise ValueError(f'--query-patch {r} {c} is outside the {h}x{w} patch grid')
    box = canvas_box_for(model.cfg, args.placement)
    n_pre = model.num_prefix_tokens
    cls_maps, q_maps, shown = [], [], []
    with AttentionRecorder(model.backbone, [args.layer]) as rec:
        layer = rec.layers[0]
        for path in tqdm(images, desc=osp.basename(model.info['checkpoint'] or 'model'), unit='img'):
            x, arr = to_input(load_rgb(path), size, model.mean, model.std)
            encode(model.backbone, x.to(args.device), box)
            a = rec.attn[layer][0].numpy()  # (H, T, T)
            cls_maps.append(a[:, 0, n_pre:].reshape(-1, h, w))
            q_maps.append(np.stack([a[:, n_pre + r * w + c, n_pre:].mean(0).reshape(h, w) for r, c in queries]))
            shown.append(arr)
    return dict(cls=np.stack(cls_maps), query=np.stack(q_maps), grid=(h, w), layer=layer, images=shown,
                queries=[tuple(q) for q in queries])


def draw(path, img_idx, results, labels, patch_sizes):
    from projects.analysis.visual import overlay, pyplot, save_figure
    plt = pyplot()
    heads = max(r['cls'].shape[1] for r in results)
    cols = 2 + heads + len(results[0]['queries'])
    fig, axes = plt.subplots(len(results), cols, figsize=(2.0 * cols, 2.2 * len(results)), squeeze=False)
    for row, (res, label, p) in enumerate(zip(results, labels, patch_sizes)):
        img, queries = res['images'][img_idx], res['queries']
        cls = res['cls'][img_idx]
        panels = [('image', img), ('[CLS] mean', overlay(img, cls.mean(0)))]
        panels += [(f'[CLS] head {i}', overlay(img, cls[i])) for i in range(cls.shape[0])]
        panels += [None] * (heads - cls.shape[0])
        panels += [(f'patch ({r},{c})', overlay(img, res['query'][img_idx][qi])) for qi, (r, c) in enumerate(queries)]
        for col, ax in enumerate(axes[row]):
            ax.axis('off')
            if panels[col] is None:
                continue
            title, pic = panels[col]
            ax.imshow(pic)
            ax.set_title(title, fontsize=8)
            if title.startswith('patch'):
                r, c = queries[col - 2 - heads]
                ax.add_patch(plt.Rectangle((c * p, r * p), p, p, fill=False, edgecolor='cyan', linewidth=1.5))
        axes[row][0].text(-0.08, 0.5, label, transform=axes[row][0].transAxes, rotation=90, va='center',
                          ha='right', fontsize=9)
    fig.suptitle(f'attention of block {results[0]["layer"]}', fontsize=10)
    return save_figure(fig, path)


def main(argv=None):
    args = parse_args(argv)
    from projects.common.backbone_loader import load_backbone
    from projects.analysis.visual import list_images
    images = list_images(args.images, args.max_images)
    specs = [(args.config, args.checkpoint, args.key)]
    if args.config2:
        specs.append((args.config2, args.checkpoint2, args.key2 or args.key))
    labels = args.labels or [osp.splitext(osp.basename(s[1]))[0] + f' ({s[2]})' for s in specs]
    models = [load_backbone(c, ck, k, args.device) for c, ck, k in specs]
    for m in models:
        print(f'loaded {m.source}')
    results = []
    for m in models:
        h, w = _input_size(args, m)
        queries = [tuple(q) for q in (args.query_patch or [[h // m.patch_size // 2, w // m.patch_size // 2]])]
        results.append(run_model(m, images, args, queries))
    os.makedirs(args.out_dir, exist_ok=True)
    files, per_image = [], []
    for i, path in enumerate(images):
        stem = osp.splitext(osp.basename(path))[0]
        png = draw(osp.join(args.out_dir, f'attn_{i:03d}_{stem}.png'), i, results, labels,
                   [m.patch_size for m in models])
        files.append(png)
        per_image.append(dict(image=path, png=png, cls_attention_entropy={
            label: [_entropy(hm) for hm in res['cls'][i]] for label, res in zip(labels, results)}))
    npz = osp.join(args.out_dir, 'attention_maps.npz')
    np.savez_compressed(npz, **{f'{j}_cls': r['cls'] for j, r in enumerate(results)},
                        **{f'{j}_query': r['query'] for j, r in enumerate(results)})
    summary = dict(
        layer=[r['layer'] for r in results], placement=args.placement,
        models=[dict(label=label, config=m.info['config'], checkpoint=m.info['checkpoint'], key=m.info['key'],
                     source=m.source, heads=int(r['cls'].shape[1]), grid=list(r['grid']),
                     query_patches=[list(q) for q in r['queries']],
                     mean_cls_entropy=float(np.mean([im['cls_attention_entropy'][label] for im in per_image])))
                for label, m, r in zip(labels, models, results)],
        images=per_image, npz=npz)
    out_json = osp.join(args.out_dir, 'attention_maps.json')
    with open(out_json, 'w') as f:
        json.dump(summary, f, indent=2)
    for mod in summary['models']:
        print(f"{mod['label']}: block {summary['layer'][0]}, {mod['heads']} heads, mean [CLS]-attention entropy "
              f"{mod['mean_cls_entropy']:.3f} nats (uniform over {np.prod(mod['grid'])} patches: "
              f"{np.log(np.prod(mod['grid'])):.3f})")
    print(f'wrote {len(files)} figures, {out_json} and {npz}')
    return summary


if __name__ == '__main__':
    main()
