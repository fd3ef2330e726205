"""Pictures of a learned position field: its first three principal components as RGB, both as pre-trained
(Hf x Wf) and as sampled for a detector input, and the cosine similarity of every location to a few
reference locations.

For a detector input of ``det_size`` pixels and the backbone's patch size p, the field is sampled on a
(det_size/p)^2 grid with ``PositionField.for_whole_image`` for the 'whole' placement (image = whole canvas,
the detector default) and for the 'mean' pre-training placement (docs/analysis.md). A baseline with an
ordinary learned ``pos_embed`` (``pos_embed_type='interpolate'``, or a plain ViT) is shown the same way, its
patch embeddings taken as the field and resized bicubically as mmpretrain does.
``tools/analysis/position_field.py`` is the command line; the default job's report draws the same figure.
"""
import json
import os
import os.path as osp
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from ..models.backbones.pos_field_vit import PosFieldViT
from ..models.utils.pos_field import patch_positions
from .canvas import canvas_box_for

DEFAULT_REFS = ((0.25, 0.25), (0.25, 0.75), (0.5, 0.5), (0.75, 0.25), (0.75, 0.75))


def field_and_samplers(backbone, cfg):
    """``(kind, field (D, Hf, Wf), {placement name: sampler(grid_hw) -> (D, h, w)})``."""
    from projects.posfield.batch.placement import Placement
    pos_field = getattr(backbone, 'pos_field', None)
    if pos_field is not None:
        field = pos_field.field.detach().float()[0]
        samplers = {}
        for name in ('whole', 'mean'):
            box = canvas_box_for(cfg, name)
            place = None if box is None else Placement(box[0], box[1], box[2] - box[0])

            def sample(hw, place=place):
                return pos_field.for_whole_image(1, hw, place)[0].t().reshape(-1, *hw).detach().float()
            samplers[name] = sample
        return f'position field ({pos_field.mode})', field, samplers
    pos_embed = getattr(backbone, 'pos_embed', None)
    if pos_embed is None:
        raise TypeError(f'{type(backbone).__name__} has neither pos_field nor pos_embed: nothing to draw')
    n_extra = int(getattr(backbone, 'num_extra_tokens', 1))
    src_hw = tuple(backbone.patch_resolution)
    field = pos_embed.detach().float()[0, n_extra:].t().reshape(-1, *src_hw)
    # the resize the backbone itself uses: patch_positions' default (DINOv2's interpolate offset) for PosFieldViT's
    # baseline mode, no offset for another ViT
    offset = {} if isinstance(backbone, PosFieldViT) else dict(interpolate_offset=0.0)

    def sample(hw):
        out = patch_positions('interpolate', hw, 1, pos_embed=pos_embed.detach().float()[:, n_extra:],
                              pos_embed_hw=src_hw, interpolate_mode=backbone.interpolate_mode, **offset)
        return out[0].t().reshape(-1, *hw)
    return 'learned pos_embed (resized, no placement)', field, {'whole': sample}


def cosine_maps(grid: torch.Tensor, refs):
    """``grid`` (D, h, w) -> cosine similarity maps (R, h, w) to the cells under the reference locations."""
    d, h, w = grid.shape
    flat = F.normalize(grid.reshape(d, -1).t(), dim=1)  # (h*w, D)
    cells = [(min(int(y * h), h - 1), min(int(x * w), w - 1)) for y, x in refs]
    sims = torch.stack([flat @ flat[r * w + c] for r, c in cells]).reshape(len(refs), h, w)
    return sims, cells


def similarity_profile(grid: torch.Tensor, bins: int = 12):
    """Mean cosine similarity between locations as a function of their distance (canvas fractions), and the
    mean similarity of horizontally / vertically adjacent cells."""
    d, h, w = grid.shape
    flat = F.normalize(grid.reshape(d, -1).t().double(), dim=1)
    sim = flat @ flat.t()
    ys, xs = torch.meshgrid((torch.arange(h, dtype=torch.float64) + 0.5) / h,
                            (torch.arange(w, dtype=torch.float64) + 0.5) / w, indexing='ij')
    pts = torch.stack([ys.flatten(), xs.flatten()], 1)
    dist = torch.cdist(pts, pts)
    edges = torch.linspace(0, float(dist.max()) + 1e-9, bins + 1, dtype=torch.float64)
    idx = torch.bucketize(dist.flatten(), edges[1:-1])
    prof = torch.zeros(bins, dtype=torch.float64).index_add_(0, idx, sim.flatten())
    counts = torch.bincount(idx, minlength=bins).double()
    g = F.normalize(grid.double(), dim=0)
    horiz = (g[:, :, 1:] * g[:, :, :-1]).sum(0).mean() if w > 1 else torch.tensor(float('nan'))
    vert = (g[:, 1:] * g[:, :-1]).sum(0).mean() if h > 1 else torch.tensor(float('nan'))
    centres = 0.5 * (edges[1:] + edges[:-1])
    keep = counts > 0
    return dict(distance=centres[keep].tolist(), mean_cosine=(prof[keep] / counts[keep]).tolist(),
                adjacent_cosine_horizontal=float(horiz), adjacent_cosine_vertical=float(vert))


def position_field_figures(config, checkpoint: str, key: str = 'teacher', det_size: int = 1024,
                           det_patch: Optional[int] = None, refs: Sequence[Tuple[float, float]] = DEFAULT_REFS,
                           out_dir: str = 'work_dirs/analysis/position_field') -> dict:
    """Load ``checkpoint`` into ``config``'s backbone; write ``position_field_pca.png``,
    ``position_field_similarity.png`` and ``position_field.json`` into ``out_dir``; return the JSON's content.

    ``det_size`` / ``det_patch``: the detector input side and patch size (default: the backbone's) the field is
    sampled for; ``refs``: reference locations ``(y, x)`` as fractions of each picture."""
    from projects.analysis.visual import pca_fit, pca_rgb, pyplot, save_figure
    from projects.common.backbone_loader import UNUSED_IN_ANALYSIS, load_backbone
    # Only positions are drawn: a detector backbone file without the [CLS] token is fine here.
    model = load_backbone(config, checkpoint, key, 'cpu', allow_missing=UNUSED_IN_ANALYSIS + ('cls_token', 'cls_pos'))
    print(f'loaded {model.source}')
    kind, field, samplers = field_and_samplers(model.backbone, model.cfg)
    dims, fh, fw = field.shape
    patch = det_patch or model.patch_size
    g = det_size // patch
    if g < 1:
        raise ValueError(f'--det-size {det_size} is smaller than the patch size {patch}')
    sampled = {name: fn((g, g)) for name, fn in samplers.items()}

    # PCA fitted on the field as pre-trained; sampled grids are projected on the same axes and colour scale.
    mean, comps, ratio = pca_fit(field.reshape(dims, -1).t())
    rgb_field, lo, hi = pca_rgb(field.reshape(dims, -1).t(), mean, comps)
    pictures = [(f'as pre-trained ({fh}x{fw})', rgb_field.reshape(fh, fw, 3).numpy())]
    for name, grid in sampled.items():
        rgb, _, _ = pca_rgb(grid.reshape(dims, -1).t(), mean, comps, lo, hi)
        pictures.append((f'sampled for {det_size}px, {name} placement ({g}x{g})', rgb.reshape(g, g, 3).numpy()))
    plt = pyplot()
    fig, axes = plt.subplots(1, len(pictures), figsize=(4 * len(pictures), 4.3), squeeze=False)
    for ax, (title, pic) in zip(axes[0], pictures):
        ax.imshow(pic, interpolation='nearest')
        ax.set_title(title, fontsize=9)
        ax.axis('off')
    fig.suptitle(f'{kind}: PCA of {dims} channels -> RGB (explained variance '
                 + ', '.join(f'{float(r):.2f}' for r in ratio) + ')', fontsize=10)
    os.makedirs(out_dir, exist_ok=True)
    pca_png = save_figure(fig, osp.join(out_dir, 'position_field_pca.png'))

    grids = [('as pre-trained', field)] + [(f'{det_size}px, {n}', s) for n, s in sampled.items()]
    fig, axes = plt.subplots(len(refs), len(grids), figsize=(3.3 * len(grids), 3.0 * len(refs)),
                             squeeze=False)
    ref_cells = {}
    for col, (title, grid) in enumerate(grids):
        sims, cells = cosine_maps(grid, refs)
        ref_cells[title] = [list(c) for c in cells]
        for row in range(len(refs)):
            ax = axes[row][col]
            im = ax.imshow(sims[row].numpy(), cmap='coolwarm', vmin=-1, vmax=1, interpolation='nearest')
            ax.plot(cells[row][1], cells[row][0], 'k+', markersize=9)
            ax.set_title(f'{title}\nref y,x = {refs[row][0]:.2f},{refs[row][1]:.2f}', fontsize=8)
            ax.axis('off')
    fig.colorbar(im, ax=axes, shrink=0.6, label='cosine similarity')
    sim_png = save_figure(fig, osp.join(out_dir, 'position_field_similarity.png'))

    summary = dict(
        config=config, checkpoint=checkpoint, key=key, source=model.source, kind=kind,
        embed_dims=int(dims), field_hw=[int(fh), int(fw)], det_size=det_size, det_patch=patch,
        det_grid=[g, g], placements=list(sampled), pca_explained_variance_ratio=[float(r) for r in ratio],
        refs=[list(r) for r in refs], ref_cells=ref_cells,
        similarity_profile=similarity_profile(field), files=dict(pca=pca_png, similarity=sim_png))
    out_json = osp.join(out_dir, 'position_field.json')
    with open(out_json, 'w') as f:
        json.dump(summary, f, indent=2)
    prof = summary['similarity_profile']
    print(f'{kind}: {dims} channels on {fh}x{fw}; PCA variance ratio '
          + ', '.join(f'{r:.3f}' for r in summary['pca_explained_variance_ratio'])
          + f"; adjacent-cell cosine {prof['adjacent_cosine_horizontal']:.3f} (horizontal), "
          f"{prof['adjacent_cosine_vertical']:.3f} (vertical)")
    print(f'wrote {pca_png}, {sim_png} and {out_json}')
    return summary
