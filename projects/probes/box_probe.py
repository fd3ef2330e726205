"""Frozen localisation probe: does a patch token carry the box of the object it lies on?

Protocol (docs/evidence.md). Every non-crowd ground-truth instance (:func:`.coco_patches.instance_boxes`: the box
on the square probe canvas, in fractions of its side) is paired with every patch whose centre lies strictly inside
its box. A linear head on the frozen patch token predicts the distances from the patch centre to the box's left,
top, right and bottom edges, in fractions of the image side (the regression targets of FCOS, Tian et al., ICCV
2019), trained with an L1 loss. A patch inside several boxes is one sample per box, each with its box's targets:
the same feature then has more than one answer, a limit every row of the table shares. Features are standardised,
the folds of train images, the learning-rate grid, the optimiser and the seed are the patch probe's
(:mod:`.dense`); the head starts as the constant predictor (weights 0, bias the mean fitting targets), and the
learning rate is the one with the best mean hold-out mean IoU over the folds; the reported head is then fitted on
every train pair.

Decode: the box ``(cx - l, cy - t, cx + r, cy + b)`` around the patch centre ``(cx, cy)``, predicted distances
clamped at 0 first (a negative distance would put the edge on the wrong side of the centre, where no ground-truth
box of the patch can have it). Reported on val, in percent:

* ``mean_iou``: the IoU of the ground-truth box with the box decoded from each inside patch, averaged over the
  patches of an instance, then over instances;
* ``iou50_rate``: the fraction of instances whose median box (the median of each coordinate over the decoded
  boxes of its inside patches) reaches IoU >= 0.5 with the ground truth.

Instances with no patch centre inside their box (about a patch wide or less) are not scored; their number is
reported. Floor of the measure: the constant predictor, the mean training targets for every patch
(:func:`constant_box_floor`).
"""
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .dense import PROBE_FOLDS, PROBE_LRS, cross_validate, fit_linear_heads, image_folds


def patch_centres(grid: int) -> torch.Tensor:
    """``(grid * grid, 2)`` centres ``(x, y)`` of a square grid's cells in fractions of the side, row-major (the
    order of the patch tokens and of :func:`.coco_patches.patch_labels`)."""
    c = (torch.arange(grid, dtype=torch.float32) + 0.5) / grid
    ys, xs = torch.meshgrid(c, c, indexing='ij')
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], 1)


def encode_targets(centre: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """Distances ``(l, t, r, b)`` from each centre ``(P, 2)`` to the edges of its box ``(P, 4)`` (x0, y0, x1, y1)."""
    return torch.stack([centre[:, 0] - box[:, 0], centre[:, 1] - box[:, 1],
                        box[:, 2] - centre[:, 0], box[:, 3] - centre[:, 1]], 1)


def decode_boxes(centre: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """Boxes ``(x0, y0, x1, y1)`` from centres ``(P, 2)`` and predicted distances ``(P, 4)``, clamped at 0."""
    d = dist.clamp(min=0)
    return torch.stack([centre[:, 0] - d[:, 0], centre[:, 1] - d[:, 1],
                        centre[:, 0] + d[:, 2], centre[:, 1] + d[:, 3]], 1)


def aligned_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of each box of ``a`` with the box of ``b`` in the same row (mmdet's ``bbox_overlaps``)."""
    from mmdet.structures.bbox import bbox_overlaps
    return bbox_overlaps(a.float(), b.float(), mode='iou', is_aligned=True)


@dataclass
class BoxSamples:
    """The (instance, inside patch) pairs of a split, one row each."""
    img: torch.Tensor       # (P,) image index in the split
    patch: torch.Tensor     # (P,) patch index, row-major
    instance: torch.Tensor  # (P,) instance index in the split
    centre: torch.Tensor    # (P, 2) patch centre (x, y), fractions of the side
    box: torch.Tensor       # (P, 4) the instance's box (x0, y0, x1, y1), fractions of the side
    num_instances: int      # instances of the split, with or without an inside patch

    def __len__(self) -> int:
        return len(self.img)

    @property
    def target(self) -> torch.Tensor:
        return encode_targets(self.centre, self.box)

    def subset(self, keep: torch.Tensor) -> 'BoxSamples':
        return BoxSamples(self.img[keep], self.patch[keep], self.instance[keep], self.centre[keep], self.box[keep],
                          self.num_instances)

    def features(self, feats: torch.Tensor) -> torch.Tensor:
        """Each pair's patch token from the split's ``(B, N, D)`` features."""
        return feats[self.img, self.patch]


def box_samples(boxes: Sequence[np.ndarray], grid: int) -> BoxSamples:
    """The pairs of a split from each image's ``(K, 4)`` boxes (:func:`.coco_patches.instance_boxes`) on a
    ``grid x grid`` patch grid; instances are numbered in image order."""
    centres = patch_centres(grid)
    counts = torch.tensor([len(b) for b in boxes], dtype=torch.long)
    all_boxes = torch.from_numpy(np.concatenate(boxes).astype(np.float32)) if int(counts.sum()) else \
        torch.zeros(0, 4)
    img_of = torch.repeat_interleave(torch.arange(len(boxes)), counts)
    cx, cy = centres[None, :, 0], centres[None, :, 1]
    inside = ((cx > all_boxes[:, 0:1]) & (cx < all_boxes[:, 2:3]) & (cy > all_boxes[:, 1:2]) &
              (cy < all_boxes[:, 3:4]))  # (instances, patches)
    inst, patch = inside.nonzero(as_tuple=True)
    return BoxSamples(img_of[inst], patch, inst, centres[patch], all_boxes[inst], len(all_boxes))


def box_scores(pred: torch.Tensor, samples: BoxSamples) -> Dict[str, object]:
    """``mean_iou`` and ``iou50_rate`` (percent, module docstring) of decoded boxes ``(P, 4)``, one per pair, and
    the number of instances scored."""
    if len(samples) == 0:
        return dict(mean_iou=None, iou50_rate=None, instances=0)
    iou = aligned_iou(pred, samples.box).double()
    ids, inv, counts = torch.unique(samples.instance, return_inverse=True, return_counts=True)
    per_instance = torch.zeros(len(ids), dtype=torch.float64).index_add_(0, inv, iou) / counts
    order = torch.argsort(inv, stable=True)  # the pairs grouped by instance, groups in the order of ids
    groups = torch.split(pred[order].double(), counts.tolist())
    median = torch.stack([torch.quantile(g, 0.5, dim=0) for g in groups])  # the middle two averaged when even
    gt = samples.box[order][torch.cumsum(counts, 0) - counts]
    median_iou = aligned_iou(median, gt)
    return dict(mean_iou=100.0 * float(per_instance.mean()), iou50_rate=100.0 * float((median_iou >= 0.5).double()
                                                                                        .mean()),
                instances=int(len(ids)))


def train_box_probe(train_x: torch.Tensor, train: BoxSamples, val_x: torch.Tensor, val: BoxSamples,
                    lrs: Sequence[float] = PROBE_LRS, epochs: int = 20, batch_size: int = 512,
                    folds: int = PROBE_FOLDS, seed: int = 0,
                    images: Optional[torch.Tensor] = None) -> Dict[str, object]:
    """The localisation probe (module docstring) on per-pair features ``train_x`` ``(P, D)`` and ``val_x``.
    ``images``: the train image indices dealt into the folds (default: those with a pair); pass the patch probe's
    so both probes hold out the same images. Returns the val scores of the chosen head, its ``lr``, its val ``l1``
    and every learning rate's mean hold-out and val scores."""
    if len(train) == 0 or len(val) == 0:
        raise ValueError(f'the localisation probe needs instances with a patch centre inside their box in both '
                         f'splits; got {len(train)} train and {len(val)} val pairs')
    gen = torch.Generator().manual_seed(seed)
    targets = train.target

    def fit(mask: torch.Tensor):
        # every head starts as the constant predictor of its fitting set (its mean targets), the floor of the measure
        return fit_linear_heads(train_x[mask], targets[mask], 4, F.l1_loss, lrs, epochs, batch_size, gen, seed,
                                bias_init=targets[mask].mean(0))

    def scores(fit_mask: torch.Tensor, hold_mask: torch.Tensor) -> List[float]:
        heads, standardise = fit(fit_mask)
        held = train.subset(hold_mask)
        with torch.no_grad():
            xh = standardise(train_x[hold_mask])
            return [box_scores(decode_boxes(held.centre, h(xh)), held)['mean_iou'] for h in heads]
    best, selected_by, hold, per_fold = cross_validate(image_folds(train.img, folds, gen, images), scores, len(lrs),
                                                       'mean IoU')
    heads, standardise = fit(torch.ones(len(train), dtype=torch.bool))
    with torch.no_grad():
        xv = standardise(val_x)
        val_pred = [h(xv) for h in heads]
        val_scores = [box_scores(decode_boxes(val.centre, p), val) for p in val_pred]
    return dict(val_scores[best], lr=float(lrs[best]), selected_by=selected_by,
                l1=float(F.l1_loss(val_pred[best], val.target)),
                unscored_instances=val.num_instances - val_scores[best]['instances'],
                pairs=dict(train=len(train), val=len(val)),
                per_lr=[dict(lr=float(lr), holdout_mean_iou=hold[i], holdout_mean_iou_folds=[f[i] for f in per_fold],
                             val_mean_iou=val_scores[i]['mean_iou'], val_iou50_rate=val_scores[i]['iou50_rate'])
                        for i, lr in enumerate(lrs)])


def constant_box_floor(train: BoxSamples, val: BoxSamples) -> Dict[str, object]:
    """The constant predictor: the mean training targets decoded around every val patch. Also reported: the
    per-coordinate median of the training targets (``l1_optimal``), the constant that minimises the training L1
    loss and so the one a head on an uninformative feature moves to; the two agree when the targets are
    symmetric about their mean."""
    targets = train.target
    out: Dict[str, object] = {}
    for name, const in (('mean', targets.mean(0)), ('median', torch.quantile(targets.double(), 0.5, dim=0))):
        scores = box_scores(decode_boxes(val.centre, const.float().expand(len(val), 4)), val)
        scores['targets'] = [float(v) for v in const]
        if name == 'mean':
            out.update(scores, note='the mean training targets (l, t, r, b) for every patch')
        else:
            out['l1_optimal'] = dict(scores, note='the per-coordinate median of the training targets for every patch')
    return out


def localisation_row(train_feats: torch.Tensor, val_feats: torch.Tensor, train: BoxSamples, val: BoxSamples,
                     seed: int = 0, epochs: int = 20, lrs: Sequence[float] = PROBE_LRS,
                     images: Optional[torch.Tensor] = None) -> Optional[Dict[str, object]]:
    """:func:`train_box_probe` on the split's ``(B, N, D)`` patch features; None when a split has no pair."""
    if len(train) == 0 or len(val) == 0:
        return None
    return train_box_probe(train.features(train_feats), train, val.features(val_feats), val, lrs=lrs,
                           epochs=epochs, seed=seed, images=images)


__all__ = ['BoxSamples', 'aligned_iou', 'box_samples', 'box_scores', 'constant_box_floor',
                      'decode_boxes', 'encode_targets', 'localisation_row', 'patch_centres', 'train_box_probe']
