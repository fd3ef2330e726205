"""k-NN and linear-probe accuracy of a pre-trained backbone's frozen features on a labelled image set.

k-NN: DINO's weighted vote (cosine similarity, :mod:`.knn`). Linear probe: logistic regression trained with
torch on standardised frozen features, the learning rate chosen on a held-out part of the training features
(:mod:`.linear_probe`; docs/analysis.md). ``tools/analysis/knn_linear_probe.py`` is the command line.
"""
import json
import os
import os.path as osp
from typing import Callable, Optional, Sequence, Tuple

Box = Optional[Tuple[float, float, float, float]]


def dataset_cfgs(dataset_type: str, data_root: Optional[str], train_dir: Optional[str] = None,
                 val_dir: Optional[str] = None, img_size: int = 224):
    """Training and evaluation dataset configs: ``'ImageNet'`` splits of ``data_root``, or ``'CustomDataset'``
    class folders (``train_dir`` / ``val_dir``, by default ``data_root``'s ``train/`` and ``val/``)."""
    from .features import labelled_dataset_cfg
    if dataset_type == 'ImageNet':
        return tuple(labelled_dataset_cfg('ImageNet', data_root, s, img_size) for s in ('train', 'val'))
    train = train_dir or osp.join(data_root, 'train')
    val = val_dir or osp.join(data_root, 'val')
    for name, d in (('training', train), ('evaluation', val)):
        if not osp.isdir(d):
            raise FileNotFoundError(f'{name} folder not found: {d} (expected <class>/<image> sub-folders)')
    return (labelled_dataset_cfg('CustomDataset', train, img_size=img_size),
            labelled_dataset_cfg('CustomDataset', val, img_size=img_size))


def plot(path: str, results: dict) -> str:
    """k-NN top-1 against k, the linear probe as a line."""
    from .visual import pyplot, save_figure
    plt = pyplot()
    ks = sorted(int(k) for k in results['knn'])
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot(ks, [results['knn'][str(k)]['top1'] for k in ks], '-o', label=f'k-NN ({results["knn_feature"]})')
    if results.get('linear'):
        ax.axhline(results['linear']['top1'], color='tab:red', linestyle='--',
                   label=f'linear probe ({results["linear_feature"]}): {results["linear"]["top1"]:.2f}')
    ax.set_xscale('log')
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel('k (neighbours)')
    ax.set_ylabel('top-1 accuracy (%)')
    ax.set_title(f'{results["num_classes"]} classes, {results["num_train"]} train / {results["num_val"]} val')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def knn_linear_probe(config, checkpoint: str, train_cfg: dict, val_cfg: dict, out_dir: str, key: str = 'teacher',
                     box_for: Callable[[object], Box] = lambda cfg: None, placement: str = 'whole',
                     img_size: int = 224, batch_size: int = 64, num_workers: int = 2,
                     max_per_class: Optional[int] = None, k: Sequence[int] = (10, 20, 100, 200),
                     temperature: float = 0.07, knn_feature: str = 'cls', linear_feature: str = 'cls_avgpool',
                     no_linear: bool = False, linear_epochs: int = 100,
                     linear_lrs: Sequence[float] = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3), linear_batch_size: int = 256,
                     linear_holdout: float = 0.1, device='cpu', seed: int = 0) -> dict:
    """k-NN and linear-probe accuracy of ``checkpoint``'s frozen features (``config``'s backbone) on the datasets
    of :func:`dataset_cfgs`; writes ``knn_linear_probe.json`` and ``.png`` into ``out_dir`` and returns the
    JSON's content. ``box_for(cfg)``: the canvas window of the images (``placement`` names it in the JSON); the
    other arguments are ``tools/analysis/knn_linear_probe.py``'s options of the same names."""
    from projects.common.backbone_loader import load_backbone

    from .features import extract_features, feature_variant, labelled_loaders
    from .knn import knn_scores, topk_accuracy
    from .linear_probe import train_linear_probe
    train_loader, val_loader, num_classes = labelled_loaders(train_cfg, val_cfg, img_size, batch_size, num_workers,
                                                             max_per_class, seed)
    model = load_backbone(config, checkpoint, key, device)
    print(f'loaded {model.source}')
    kw = dict(mean=model.mean, std=model.std, bgr_to_rgb=True, box=box_for(model.cfg))
    tr = extract_features(model.backbone, train_loader, desc='train features', **kw)
    va = extract_features(model.backbone, val_loader, desc='val features', **kw)
    xt, xv = feature_variant(tr, knn_feature).to(device), feature_variant(va, knn_feature).to(device)
    scores = knn_scores(xt, tr['labels'].to(device), xv, num_classes, k, temperature)
    results = dict(config=config, checkpoint=checkpoint, key=key, source=model.source,
                   num_classes=num_classes, num_train=int(len(tr['labels'])), num_val=int(len(va['labels'])),
                   feature_dim=int(xt.shape[1]), temperature=temperature, knn_feature=knn_feature,
                   linear_feature=linear_feature, placement=placement,
                   knn={str(n): topk_accuracy(s, va['labels']) for n, s in scores.items()})
    if not no_linear:
        results['linear'] = train_linear_probe(
            feature_variant(tr, linear_feature), tr['labels'], feature_variant(va, linear_feature),
            va['labels'], num_classes, lrs=linear_lrs, epochs=linear_epochs,
            batch_size=linear_batch_size, holdout=linear_holdout, seed=seed, device=device,
            progress=True)
    os.makedirs(out_dir, exist_ok=True)
    results['png'] = plot(osp.join(out_dir, 'knn_linear_probe.png'), results)
    out_json = osp.join(out_dir, 'knn_linear_probe.json')
    with open(out_json, 'w') as f:
        json.dump(results, f, indent=2)
    for n in k:
        acc = results['knn'][str(n)]
        print(f'k-NN k={n:<4d} T={temperature}: top1 {acc["top1"]:.2f}  top5 {acc["top5"]:.2f}')
    if 'linear' in results:
        lin = results['linear']
        print(f'linear probe ({linear_feature}, lr {lin["lr"]} by {lin["selected_by"]}): '
              f'top1 {lin["top1"]:.2f}  top5 {lin["top5"]:.2f}')
    print(f'wrote {out_json} and {results["png"]}')
    return results
