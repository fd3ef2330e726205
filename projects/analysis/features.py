"""Labelled evaluation data (mmpretrain datasets) and frozen-feature extraction for k-NN / linear probes."""
import copy
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Subset

from projects.common.backbone_loader import IMAGENET_MEAN, IMAGENET_STD

from .encoding import encode, normalize_images

FEATURES = ('cls', 'avgpool', 'cls_avgpool')


def eval_pipeline(img_size: int = 224) -> List[dict]:
    """The usual evaluation transform: resize the short side to ``img_size * 256 / 224``, centre crop."""
    return [
        dict(type='LoadImageFromFile'),
        dict(type='ResizeEdge', scale=int(round(img_size * 256 / 224)), edge='short', backend='pillow',
             interpolation='bicubic'),
        dict(type='CenterCrop', crop_size=img_size),
        dict(type='PackInputs'),
    ]


def labelled_dataset_cfg(dataset_type: str, data_root: str, split: Optional[str] = None,
                         img_size: int = 224) -> dict:
    """Config of a labelled set: ``CustomDataset`` over ``data_root/<class>/*`` or mmpretrain ``ImageNet``
    (``data_root`` with ``split`` = ``'train'`` / ``'val'``)."""
    if dataset_type == 'CustomDataset':
        return dict(type='CustomDataset', data_root=data_root, with_label=True, pipeline=eval_pipeline(img_size))
    if dataset_type == 'ImageNet':
        if split is None:
            raise ValueError('ImageNet needs a split (train/val)')
        return dict(type='ImageNet', data_root=data_root, split=split, pipeline=eval_pipeline(img_size))
    raise ValueError(f"dataset type must be 'CustomDataset' or 'ImageNet', got {dataset_type!r}")


def build_labelled_dataset(cfg: dict, img_size: int = 224):
    """Build an mmpretrain dataset; the evaluation pipeline is added when ``cfg`` has none."""
    import mmpretrain.datasets  # noqa: F401  (registers datasets and transforms)
    from mmpretrain.registry import DATASETS
    cfg = copy.deepcopy(dict(cfg))
    cfg.setdefault('pipeline', eval_pipeline(img_size))
    try:
        dataset = DATASETS.build(cfg)
    except Exception as exc:  # say which set failed; mmengine's messages omit it
        raise RuntimeError(f'cannot build the labelled dataset {cfg.get("type")} at '
                           f'data_root={cfg.get("data_root")!r}: {exc}') from exc
    if len(dataset) == 0:
        raise ValueError(f'labelled dataset at {cfg.get("data_root")!r} is empty')
    return dataset


def num_classes_of(dataset) -> int:
    classes = dataset.metainfo.get('classes')
    if classes:
        return len(classes)
    return int(max(dataset.get_gt_labels())) + 1


def subset_per_class(dataset, max_per_class: Optional[int], seed: int = 0):
    """At most ``max_per_class`` samples of each class (a deterministic random choice), or the dataset."""
    if not max_per_class:
        return dataset
    labels = np.asarray(dataset.get_gt_labels())
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        keep.extend(sorted(rng.permutation(idx)[:max_per_class].tolist()))
    return Subset(dataset, sorted(keep))


def _collate(batch):
    from mmengine.dataset import pseudo_collate
    return pseudo_collate(batch)


def build_loader(dataset, batch_size: int = 64, num_workers: int = 2) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      collate_fn=_collate, persistent_workers=False)


def labelled_loaders(train_cfg: dict, val_cfg: dict, img_size: int = 224, batch_size: int = 64,
                     num_workers: int = 2, max_per_class: Optional[int] = None,
                     seed: int = 0) -> Tuple[DataLoader, DataLoader, int]:
    """(training loader, evaluation loader, number of classes) of a labelled training and evaluation set (dataset
    configs, see :func:`build_labelled_dataset`), the training set cut to ``max_per_class`` samples a class."""
    train_set = build_labelled_dataset(train_cfg, img_size)
    val_set = build_labelled_dataset(val_cfg, img_size)
    num_classes = num_classes_of(train_set)
    if num_classes_of(val_set) != num_classes:
        raise ValueError(f'training set has {num_classes} classes, evaluation set {num_classes_of(val_set)}: '
                         'both folders need the same class sub-folders')
    train_set = subset_per_class(train_set, max_per_class, seed)
    return build_loader(train_set, batch_size, num_workers), build_loader(val_set, batch_size, num_workers), num_classes


@torch.no_grad()
def extract_features(backbone: nn.Module, loader: DataLoader, mean: Sequence[float] = IMAGENET_MEAN,
                     std: Sequence[float] = IMAGENET_STD, bgr_to_rgb: bool = True,
                     box: Optional[Tuple[float, float, float, float]] = None, progress: bool = True,
                     desc: str = 'features') -> Dict[str, torch.Tensor]:
    """Frozen features of every sample: ``cls`` and ``avgpool`` (mean of the final-normed patch tokens),
    both ``(N, D)`` float32 on CPU, and ``labels`` ``(N,)`` int64.

    ``bgr_to_rgb``: mmpretrain's ``LoadImageFromFile`` gives BGR; the pre-training preprocessor converts
    to RGB before normalising with RGB mean/std, so do the same here.
    """
    was_training = backbone.training
    backbone.eval()
    device = next(backbone.parameters()).device
    out = defaultdict(list)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(loader.dataset), desc=desc, unit='img', leave=False)
    try:
        for batch in loader:
            imgs = torch.stack(list(batch['inputs'])).to(device)
            x = normalize_images(imgs, mean, std, bgr_to_rgb)
            cls, patches = encode(backbone, x, box)
            out['cls'].append(cls.float().cpu())
            out['avgpool'].append(patches.float().mean(1).cpu())
            out['labels'].append(torch.as_tensor([int(ds.gt_label[0]) for ds in batch['data_samples']]))
            if bar is not None:
                bar.update(len(imgs))
    finally:
        if bar is not None:
            bar.close()
        backbone.train(was_training)
    return {k: torch.cat(v) for k, v in out.items()}


def feature_variant(feats: Dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """``cls``, ``avgpool`` or ``cls_avgpool`` (their concatenation, the DINOv2 linear-probe input)."""
    if name == 'cls_avgpool':
        return torch.cat([feats['cls'], feats['avgpool']], dim=1)
    if name in feats and name != 'labels':
        return feats[name]
    raise ValueError(f'feature must be one of {FEATURES}, got {name!r}')
