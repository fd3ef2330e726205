"""Attention maps of pre-trained ViTs: the [CLS] query's attention in every head of one block and the attention
of chosen patches, overlaid on the input images; one model or several, one row each.

Weights are recomputed from each block's qkv projection by a forward hook (:mod:`.attention_recorder`;
definitions in docs/analysis.md). ``tools/analysis/attention_maps.py`` is the command line; the default job's
report (:mod:`projects.report`) draws the same figures.
"""
import json
import os
import os.path as osp
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

Box = Optional[Tuple[float, float, float, float]]


def input_size(model, img_size: Optional[Sequence[int]] = None) -> Tuple[int, int]:
    """``(H, W)`` of the input: ``img_size`` (S, or H W) or the config's; a multiple of the patch size."""
    if not img_size:
        return model.img_size, model.img_size
    h, w = (list(img_size) * 2)[:2]
    p = model.patch_size
    if h % p or w % p:
        raise ValueError(f'--img-size {h}x{w} is not a multiple of the patch size {p}')
    return h, w


def entropy(p: np.ndarray) -> float:
    """Entropy (nats) of a non-negative map, normalised to sum 1."""
    p = p / max(p.sum(), 1e-12)
    nz = p[p > 0]
    return float(-(nz * np.log(nz)).sum())


def attention_maps(model, images: Sequence[str], queries: Sequence[Tuple[int, int]], layer: int = -1,
                   box: Box = None, img_size: Optional[Sequence[int]] = None, device='cpu') -> dict:
    """Maps of one model (a :class:`~projects.common.backbone_loader.LoadedBackbone`) for every image:
    ``dict(cls (n_img, heads, h, w), query (n_img, Q, h, w), grid, layer, images, queries)``.

    ``box``: the canvas window the images occupy in a position-field backbone (None: the whole canvas)."""
    from tqdm import tqdm

    from .attention_recorder import AttentionRecorder
    from .encoding import encode
    from .visual import load_rgb, to_input
    size = input_size(model, img_size)
    h, w = size[0] // model.patch_size, size[1] // model.patch_size
    for r, c in queries:
        if not (0 <= r < h and 0 <= c < w):
            raise ValueError(f'--query-patch {r} {c} is outside the {h}x{w} patch grid')
    n_pre = model.num_prefix_tokens
    cls_maps, q_maps, shown = [], [], []
    with AttentionRecorder(model.backbone, [layer]) as rec:
        layer = rec.layers[0]
        for path in tqdm(images, desc=osp.basename(model.info['checkpoint'] or 'model'), unit='img'):
            x, arr = to_input(load_rgb(path), size, model.mean, model.std)
            encode(model.backbone, x.to(device), box)
            a = rec.attn[layer][0].numpy()  # (H, T, T)
            cls_maps.append(a[:, 0, n_pre:].reshape(-1, h, w))
            q_maps.append(np.stack([a[:, n_pre + r * w + c, n_pre:].mean(0).reshape(h, w) for r, c in queries]))
            shown.append(arr)
    return dict(cls=np.stack(cls_maps), query=np.stack(q_maps), grid=(h, w), layer=layer, images=shown,
                queries=[tuple(q) for q in queries])


def draw(path: str, img_idx: int, results: List[dict], labels: Sequence[str], patch_sizes: Sequence[int]) -> str:
    """One figure for image ``img_idx``: a row per model (image, mean and per-head [CLS] attention, queries)."""
    from .visual import overlay, pyplot, save_figure
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


def write_attention_maps(models: Sequence, labels: Sequence[str], images: Sequence[str], out_dir: str,
                         box_for: Callable[[object], Box] = lambda cfg: None, placement: str = 'whole',
                         layer: int = -1, query_patches: Optional[Sequence[Sequence[int]]] = None,
                         img_size: Optional[Sequence[int]] = None, device='cpu') -> dict:
    """Figures, ``attention_maps.npz`` and ``attention_maps.json`` for loaded ``models`` (one row each).

    ``box_for(cfg)``: a model config's canvas window (see :func:`attention_maps`); ``placement`` names it in
    the JSON. ``query_patches``: (row, col) patches whose attention is drawn (default: the centre patch).
    Returns the JSON's content."""
    results = []
    for m in models:
        h, w = input_size(m, img_size)
        queries = [tuple(q) for q in (query_patches or [[h // m.patch_size // 2, w // m.patch_size // 2]])]
        results.append(attention_maps(m, images, queries, layer, box_for(m.cfg), img_size, device))
    os.makedirs(out_dir, exist_ok=True)
    files, per_image = [], []
    for i, path in enumerate(images):
        stem = osp.splitext(osp.basename(path))[0]
        png = draw(osp.join(out_dir, f'attn_{i:03d}_{stem}.png'), i, results, labels,
                   [m.patch_size for m in models])
        files.append(png)
        per_image.append(dict(image=path, png=png, cls_attention_entropy={
            label: [entropy(hm) for hm in res['cls'][i]] for label, res in zip(labels, results)}))
    npz = osp.join(out_dir, 'attention_maps.npz')
    np.savez_compressed(npz, **{f'{j}_cls': r['cls'] for j, r in enumerate(results)},
                        **{f'{j}_query': r['query'] for j, r in enumerate(results)})
    summary = dict(
        layer=[r['layer'] for r in results], placement=placement,
        models=[dict(label=label, config=m.info['config'], checkpoint=m.info['checkpoint'], key=m.info['key'],
                     source=m.source, heads=int(r['cls'].shape[1]), grid=list(r['grid']),
                     query_patches=[list(q) for q in r['queries']],
                     mean_cls_entropy=float(np.mean([im['cls_attention_entropy'][label] for im in per_image])))
                for label, m, r in zip(labels, models, results)],
        images=per_image, npz=npz)
    out_json = osp.join(out_dir, 'attention_maps.json')
    with open(out_json, 'w') as f:
        json.dump(summary, f, indent=2)
    for mod in summary['models']:
        print(f"{mod['label']}: block {summary['layer'][0]}, {mod['heads']} heads, mean [CLS]-attention entropy "
              f"{mod['mean_cls_entropy']:.3f} nats (uniform over {np.prod(mod['grid'])} patches: "
              f"{np.log(np.prod(mod['grid'])):.3f})")
    print(f'wrote {len(files)} figures, {out_json} and {npz}')
    return summary
