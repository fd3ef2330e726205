"""Dense frozen-feature probes: a linear per-patch classifier scored by mIoU, and k-NN on instance crops.

Protocol (docs/evidence.md): the paper's segmentation evaluation is a linear head on frozen features; here the
head is a per-patch linear classifier over ``C + 1`` classes (background included) trained with cross-entropy
on the train split's per-patch labels (:mod:`.coco_patches`), features standardised with the fitting set's
statistics. Several learning rates are trained at once. The learning rate is chosen by cross-validation over the
train *images*: they are dealt into ``PROBE_FOLDS`` folds, each fold is held out once while the heads are fitted on
the others, and the rate with the best mean hold-out mIoU wins; the heads are then fitted on every train image and
the chosen one's mIoU on the val split is reported. mIoU is the mean over the classes that occur in the val ground
truth or the predictions of ``TP / (TP + FP + FN)`` counted over all val patches.

Floor of the measure: predicting background everywhere scores ``(background patches / patches) / K`` with
``K`` the number of classes present in the val ground truth (:func:`all_background_miou`).

``foreground``: the same probe on class-agnostic labels (object vs background, K = 2), a second dense measure that
needs no shape context: what separates objects from background in a patch.
"""
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from projects.common.errors import BadInputError

from .coco_patches import IGNORE, CocoSplit, instance_boxes, instance_crops, resized_image_and_labels

Encoder = Callable[[torch.Tensor], torch.Tensor]  # normalised (B, 3, S, S) -> patch features (B, N, D)
PROBE_LRS = (1e-3, 3e-3, 1e-2, 3e-2)  # every linear probe's learning-rate grid, chosen by cross-validation
PROBE_FOLDS = 5  # folds of the train images that choose the learning rate


def confusion_matrix(pred: torch.Tensor, gt: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(K, K)`` counts, rows = ground truth, columns = prediction; ``IGNORE`` ground truth is left out."""
    pred, gt = pred.reshape(-1).long(), gt.reshape(-1).long()
    keep = gt != IGNORE
    pred, gt = pred[keep], gt[keep]
    if ((gt < 0) | (gt >= num_classes)).any() or ((pred < 0) | (pred >= num_classes)).any():
        raise ValueError(f'labels must lie in [0, {num_classes}) or be {IGNORE}')
    return torch.bincount(gt * num_classes + pred, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def miou(cm: torch.Tensor) -> Dict[str, object]:
    """``miou`` (percent), ``per_class_iou`` (percent, None for a class absent from ground truth and
    predictions) and ``accuracy`` (percent of patches) of a confusion matrix."""
    cm = cm.double()
    tp = cm.diag()
    union = cm.sum(0) + cm.sum(1) - tp
    present = union > 0
    iou = torch.where(present, tp / union.clamp(min=1), torch.zeros_like(tp))
    total = cm.sum()
    return dict(miou=100.0 * float(iou[present].mean()) if bool(present.any()) else 0.0,
                per_class_iou=[100.0 * float(v) if p else None for v, p in zip(iou, present)],
                accuracy=100.0 * float(tp.sum() / total) if total > 0 else 0.0)


def all_background_miou(gt: torch.Tensor, num_classes: int) -> float:
    """mIoU (percent) of predicting background (class 0) for every patch."""
    gt = gt.reshape(-1)
    return miou(confusion_matrix(torch.zeros_like(gt), gt, num_classes))['miou']


def image_folds(train_img: torch.Tensor, folds: int, gen: torch.Generator,
                images: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
    """The cross-validation folds: one boolean mask over the training samples per fold. The train *images*
    (``images``, by default those that occur in ``train_img``, each sample's image index) are shuffled with
    ``gen`` and dealt into ``folds`` folds of near-equal size, so a fold never shares an image with the rest.
    No fold (an empty list) when there are fewer than two images or ``folds < 2``. Every probe of a row draws them
    from a generator seeded with the probe's seed, so with the same ``images`` they hold out the same images."""
    images = torch.unique(train_img) if images is None else images
    k = min(int(folds), len(images))
    if k < 2:
        return []
    perm = images[torch.randperm(len(images), generator=gen)]
    return [torch.isin(train_img, perm[i::k]) for i in range(k)]


def cross_validate(folds: Sequence[torch.Tensor], fold_scores, num_lrs: int, score_name: str):
    """Choose the learning rate over ``folds`` (:func:`image_folds`): ``fold_scores(fit_mask, hold_mask)`` fits
    every rate's head on ``fit_mask`` and returns their scores on ``hold_mask`` (higher is better). Folds whose
    hold-out or fitting set is empty, or that score None, do not count. Returns the chosen index, how it was
    chosen, the mean hold-out score per rate (None without a fold) and the per-fold scores; without a fold the
    first rate is chosen."""
    per_fold = [fold_scores(~m, m) for m in folds if bool(m.any()) and not bool(m.all())]
    per_fold = [f for f in per_fold if f[0] is not None]
    if not per_fold:
        return 0, 'first lr', [None] * num_lrs, []
    mean = [float(np.mean([f[i] for f in per_fold])) for i in range(num_lrs)]
    best = max(range(num_lrs), key=lambda i: mean[i])
    return best, f'mean hold-out {score_name} over {len(per_fold)} image folds', mean, per_fold


def fit_linear_heads(fit_x: torch.Tensor, fit_y: torch.Tensor, out_dim: int, loss_fn, lrs: Sequence[float],
                     epochs: int, batch_size: int, gen: torch.Generator, seed: int,
                     bias_init: Optional[torch.Tensor] = None):
    """One linear head per learning rate, trained together (AdamW, cosine schedule) on features standardised with
    the fitting set's statistics; weights start at zero, biases at ``bias_init`` (default zero). Returns the heads
    and the standardisation to apply to any other features before a head."""
    fit_x = fit_x.float()
    mu, sd = fit_x.mean(0, keepdim=True), fit_x.std(0, keepdim=True).clamp(min=1e-6)
    fit_x = (fit_x - mu) / sd
    torch.manual_seed(seed)
    heads = nn.ModuleList(nn.Linear(fit_x.shape[1], out_dim) for _ in lrs)
    for h in heads:
        nn.init.zeros_(h.weight)
        nn.init.zeros_(h.bias)
        if bias_init is not None:
            with torch.no_grad():
                h.bias.copy_(bias_init)
    opt = torch.optim.AdamW([dict(params=h.parameters(), lr=lr) for h, lr in zip(heads, lrs)], weight_decay=1e-4)
    steps = max((len(fit_x) + batch_size - 1) // batch_size, 1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps)
    for _ in range(epochs):
        order = torch.randperm(len(fit_x), generator=gen)
        for s in range(steps):
            idx = order[s * batch_size:(s + 1) * batch_size]
            loss = sum(loss_fn(h(fit_x[idx]), fit_y[idx]) for h in heads)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # independent heads: the sum trains each on its own loss
            opt.step()
            sched.step()

    def standardise(x: torch.Tensor) -> torch.Tensor:
        return (x.float() - mu) / sd
    return heads, standardise


def train_patch_probe(train_x: torch.Tensor, train_y: torch.Tensor, train_img: torch.Tensor, val_x: torch.Tensor,
                      val_y: torch.Tensor, num_classes: int, lrs: Sequence[float] = PROBE_LRS,
                      epochs: int = 20, batch_size: int = 4096, folds: int = PROBE_FOLDS,
                      seed: int = 0) -> Dict[str, object]:
    """Linear per-patch probe (module docstring). ``train_img`` gives each training patch's image index, so a
    fold never shares an image with the rest. Returns val ``miou``/``per_class_iou``/``accuracy``, the chosen
    ``lr`` and per-lr mean hold-out and val mIoU."""
    keep = train_y != IGNORE
    train_x, train_y, train_img = train_x[keep].float(), train_y[keep].long(), train_img[keep]
    gen = torch.Generator().manual_seed(seed)

    def scores(fit: torch.Tensor, hold: torch.Tensor) -> List[float]:
        heads, standardise = fit_linear_heads(train_x[fit], train_y[fit], num_classes, F.cross_entropy, lrs,
                                              epochs, batch_size, gen, seed)
        with torch.no_grad():
            xh = standardise(train_x[hold])
            return [miou(confusion_matrix(h(xh).argmax(1), train_y[hold], num_classes))['miou'] for h in heads]
    best, selected_by, hold, per_fold = cross_validate(image_folds(train_img, folds, gen), scores, len(lrs), 'mIoU')
    heads, standardise = fit_linear_heads(train_x, train_y, num_classes, F.cross_entropy, lrs, epochs, batch_size,
                                          gen, seed)
    with torch.no_grad():
        xv = standardise(val_x)
        val = [miou(confusion_matrix(h(xv).argmax(1), val_y, num_classes)) for h in heads]
    return dict(val[best], lr=float(lrs[best]), selected_by=selected_by,
                per_lr=[dict(lr=float(lr), holdout_miou=hold[i], holdout_miou_folds=[f[i] for f in per_fold],
                             val_miou=val[i]['miou']) for i, lr in enumerate(lrs)])


def raw_pixel_encoder(patch: int) -> Encoder:
    """The floor: each patch's normalised pixels as its feature (``3 * patch**2`` dims)."""
    def encode(x: torch.Tensor) -> torch.Tensor:
        cols = F.unfold(x, kernel_size=patch, stride=patch)  # (B, 3*p*p, N), patches in row-major order
        return cols.transpose(1, 2)
    return encode


def _normalise(rgb: np.ndarray, mean, std) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(0, 3, 1, 2).float()
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


@torch.no_grad()
def encode_batches(encoder: Encoder, rgb: np.ndarray, mean, std, batch_size: int = 16) -> torch.Tensor:
    """Patch features ``(B, N, D)`` of ``(B, S, S, 3)`` uint8 images."""
    out = [encoder(_normalise(rgb[i:i + batch_size], mean, std)).float() for i in range(0, len(rgb), batch_size)]
    return torch.cat(out)


class ProbeData:
    """The resized images, per-patch labels, instance crops and the localisation probe's (instance, patch) pairs
    of a train/val pair, made once for all rows."""

    def __init__(self, train: CocoSplit, val: CocoSplit, img_size: int, patch: int, crop_size: int):
        if train.classes != val.classes:
            raise ValueError(f'train and val categories differ: {train.ann_file} has {train.classes}, '
                             f'{val.ann_file} has {val.classes}')
        if img_size % patch or crop_size % patch:
            raise ValueError(f'--img-size {img_size} and --crop-size {crop_size} must be multiples of the patch '
                             f'size {patch}')
        self.classes, self.img_size, self.patch, self.crop_size = train.classes, img_size, patch, crop_size
        self.num_classes = len(train.classes) + 1
        from .box_probe import box_samples
        self.splits = {}
        for s in (train, val):
            imgs, labels, crops, crop_labels, boxes = [], [], [], [], []
            for im in s.images:
                rgb, lab = resized_image_and_labels(im, s.cat_to_label, img_size, patch)
                imgs.append(rgb)
                labels.append(lab)
                c, cl = instance_crops(im, s.cat_to_label, crop_size)
                crops += c
                crop_labels += cl
                boxes.append(instance_boxes(im))
            self.splits[s.split] = dict(
                images=np.stack(imgs), labels=torch.from_numpy(np.stack(labels)),
                crops=np.stack(crops) if crops else np.zeros((0, crop_size, crop_size, 3), np.uint8),
                crop_labels=torch.tensor(crop_labels, dtype=torch.long),
                box_samples=box_samples(boxes, img_size // patch))

    def describe(self) -> Dict[str, object]:
        out = dict(classes=self.classes, img_size=self.img_size, patch=self.patch, crop_size=self.crop_size)
        for name, s in self.splits.items():
            lab = s['labels']
            out[name] = dict(images=len(s['images']), patches=int((lab != IGNORE).sum()),
                             background_fraction=float((lab == 0).sum()) / max(int((lab != IGNORE).sum()), 1),
                             instances=len(s['crop_labels']), box_instances=s['box_samples'].num_instances,
                             box_pairs=len(s['box_samples']))
        return out


def probe_row(encoder: Encoder, data: ProbeData, mean, std, seed: int = 0, knn_k: int = 20,
              epochs: int = 20, lrs: Sequence[float] = PROBE_LRS) -> Dict[str, object]:
    """Every probe for one encoder: ``patch`` (linear per-patch mIoU on val), ``foreground`` (the same, object vs
    background), ``box`` (the localisation probe of :mod:`.box_probe`) and ``crop_knn`` (weighted k-NN top-1 of
    instance crops, feature = mean of the crop's patch features). ``lrs``: the linear probes' learning-rate grid."""
    from projects.analysis.knn import knn_classify

    from .box_probe import localisation_row
    tr, va = data.splits['train'], data.splits['val']
    ftr = encode_batches(encoder, tr['images'], mean, std)
    fva = encode_batches(encoder, va['images'], mean, std)
    n_tr, n_patch = ftr.shape[:2]
    img_index = torch.arange(n_tr).repeat_interleave(n_patch)
    patch = train_patch_probe(ftr.flatten(0, 1), tr['labels'].reshape(-1), img_index, fva.flatten(0, 1),
                              va['labels'].reshape(-1), data.num_classes, lrs=lrs, epochs=epochs, seed=seed)
    ytr, yva = tr['labels'].reshape(-1), va['labels'].reshape(-1)
    foreground = train_patch_probe(ftr.flatten(0, 1), _binary(ytr), img_index, fva.flatten(0, 1), _binary(yva), 2,
                                   lrs=lrs, epochs=epochs, seed=seed)
    row = dict(patch=patch, foreground=foreground, feature_dims=int(ftr.shape[-1]))
    # the patch probe's images, so every probe of the row deals the same images into the same folds
    box = localisation_row(ftr, fva, tr['box_samples'], va['box_samples'], seed, epochs, lrs=lrs,
                           images=torch.unique(img_index[ytr != IGNORE]))
    if box is not None:
        row['box'] = box
    if len(tr['crop_labels']) and len(va['crop_labels']):
        ctr = encode_batches(encoder, tr['crops'], mean, std).mean(1)
        cva = encode_batches(encoder, va['crops'], mean, std).mean(1)
        knn = knn_classify(ctr, tr['crop_labels'], cva, va['crop_labels'], data.num_classes - 1, k=knn_k)
        row['crop_knn'] = dict(top1=knn['top1'], k=knn_k, train=len(ctr), val=len(cva))
    return row


def _binary(labels: torch.Tensor) -> torch.Tensor:
    """Object (1) vs background (0); ``IGNORE`` stays."""
    return torch.where(labels == IGNORE, labels, (labels > 0).long())


def floor_rows(data: ProbeData, mean, std, seed: int = 0, epochs: int = 20,
               lrs: Sequence[float] = PROBE_LRS) -> List[Dict[str, object]]:
    """The two floors: the trivial predictor of each measure (background everywhere; the most frequent class
    for crops; the mean training box targets for the localisation probe), and the same probes on raw pixels."""
    from .box_probe import constant_box_floor
    va = data.splits['val']
    background = dict(name='all background', patch=dict(miou=all_background_miou(va['labels'], data.num_classes)),
                      foreground=dict(miou=all_background_miou(_binary(va['labels']), 2)))
    majority = torch.bincount(data.splits['train']['crop_labels'], minlength=len(data.classes)).argmax()
    if len(va['crop_labels']):
        background['crop_knn'] = dict(top1=100.0 * float((va['crop_labels'] == majority).float().mean()),
                                      note='most frequent training class for every crop')
    if len(data.splits['train']['box_samples']) and len(va['box_samples']):
        background['box'] = constant_box_floor(data.splits['train']['box_samples'], va['box_samples'])
    raw = dict(name='raw pixels',
               **probe_row(raw_pixel_encoder(data.patch), data, mean, std, seed, epochs=epochs, lrs=lrs))
    return [background, raw]


class ProbeGridError(BadInputError, ValueError):
    """Probe rows that cannot be read at one learning rate: they were run on different grids."""


# Per linear measure: its hold-out score in ``per_lr``, and the ``per_lr`` key of each reported score's val value.
SHARED_LR_MEASURES = {
    'patch': ('holdout_miou', {'miou': 'val_miou'}),
    'foreground': ('holdout_miou', {'miou': 'val_miou'}),
    'box': ('holdout_mean_iou', {'mean_iou': 'val_mean_iou', 'iou50_rate': 'val_iou50_rate'}),
}


def shared_lrs(rows: Sequence[Dict[str, object]]) -> Dict[str, float]:
    """One learning rate per linear measure for a whole table: the rate with the best mean hold-out score over
    every probe row that has one (each row's cross-validated ``per_lr``). Comparing rows at one rate keeps the
    head's optimisation out of the differences between rows, which a per-row choice between near-tied rates puts
    in. A measure no row scored on a hold-out is left out."""
    out = {}
    for measure, (hold_key, _) in SHARED_LR_MEASURES.items():
        scores: Dict[float, List[float]] = {}
        grids = set()
        for r in rows:
            entries = [e for e in (r.get(measure) or {}).get('per_lr') or [] if e.get(hold_key) is not None]
            if entries:
                grids.add(tuple(sorted(float(e['lr']) for e in entries)))
            for entry in entries:
                scores.setdefault(float(entry['lr']), []).append(float(entry[hold_key]))
        if len(grids) > 1:
            raise ProbeGridError(f'shared_lrs: the {measure} probes of these rows were not run on one learning-rate '
                                 f'grid: {sorted(grids)}')
        if scores:
            out[measure] = max(scores, key=lambda lr: float(np.mean(scores[lr])))
    return out


def at_lrs(row: Dict[str, object], lrs: Dict[str, float]) -> Dict[str, object]:
    """A copy of a probe row whose measures report their val scores at ``lrs[measure]`` (:func:`shared_lrs`),
    read from ``per_lr``; measures without ``per_lr`` (the constant floors) are unchanged."""
    row = dict(row)
    for measure, lr in lrs.items():
        res = row.get(measure)
        if not res or not res.get('per_lr'):
            continue
        entry = next((e for e in res['per_lr'] if float(e['lr']) == lr), None)
        if entry is None:
            raise ProbeGridError(f'at_lrs: row {row.get("name")!r} has no {measure} head at lr {lr:g}')
        res = dict(res, lr=lr, selected_by='shared: best mean hold-out score over the table\'s rows')
        for key, val_key in SHARED_LR_MEASURES[measure][1].items():
            res[key] = entry[val_key]
        for stale in ('per_class_iou', 'accuracy', 'l1'):
            res.pop(stale, None)  # the per-row choice's head's, not the shared rate's
        row[measure] = res
    return row


def backbone_rows_at_shared_lrs(probes: Sequence[Sequence[Dict[str, object]]]):
    """The rows of several probe outputs (each a ``dense_probe.py`` ``rows`` list: the probed backbone first, then
    any floor rows) with every backbone row read at one learning rate per measure (:func:`shared_lrs` over the
    backbone rows, :func:`at_lrs`); the floors (raw pixels, the constants) keep their own choice, so a floor is
    never lowered by a rate chosen for the backbones. Returns the rates and the rows, in the input's nesting."""
    lrs = shared_lrs([rows[0] for rows in probes if rows])
    return lrs, [[at_lrs(r, lrs) if i == 0 else r for i, r in enumerate(rows)] for rows in probes]


def backbone_patch_encoder(backbone: nn.Module, with_cls: bool = True) -> Encoder:
    """Final-normed last-layer patch tokens of a ViT on the whole canvas. ``with_cls=False`` runs a
    :class:`PosFieldViT` without its [CLS] token, as the detector does (for backbone files that do not have
    one: tools/model_converters/extract_backbone.py drops it)."""
    from projects.analysis.encoding import encode

    @torch.no_grad()
    def run(x: torch.Tensor) -> torch.Tensor:
        if with_cls:
            return encode(backbone, x)[1]
        if not hasattr(backbone, '_embed'):
            raise TypeError(f'{type(backbone).__name__} cannot run without its [CLS] token; pass a checkpoint '
                            'that has one')
        tokens, _ = backbone._embed(x)
        tokens = tokens[:, 1:]  # pre_norm is per token: dropping [CLS] after it equals never adding it
        for layer in backbone.layers:
            tokens = layer(tokens)
        return backbone.ln1(tokens) if backbone.final_norm else tokens
    return run


def summarise(values: Sequence[Optional[float]]) -> Dict[str, object]:
    """mean, sample std (0 for one value) and n of the non-None values."""
    v = np.array([x for x in values if x is not None], dtype=np.float64)
    if len(v) == 0:
        return dict(mean=None, std=None, n=0)
    return dict(mean=float(v.mean()), std=float(v.std(ddof=1)) if len(v) > 1 else 0.0, n=int(len(v)))
