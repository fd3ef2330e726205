"""k-NN and linear-probe accuracy of a pre-trained backbone's frozen features on a labelled image set.

    # any folder with train/<class>/*.jpg and val/<class>/*.jpg
    python tools/analysis/knn_linear_probe.py CONFIG CKPT --data-root data/pets --out-dir work_dirs/knn
    # ImageNet in mmpretrain's layout (data/imagenet/{train,val}, meta/{train,val}.txt)
    python tools/analysis/knn_linear_probe.py CONFIG CKPT --dataset-type ImageNet --data-root data/imagenet \\
        --batch-size 256 --num-workers 8 --out-dir work_dirs/knn_in1k

k-NN: DINO's weighted vote (cosine similarity, k=20, T=0.07; several --k at once). Linear probe: logistic
regression trained with torch on standardised frozen features, the learning rate chosen on 10 % of the
training features held out (docs/analysis.md). Features come from the EMA teacher unless --key student.
Writes ``knn_linear_probe.json`` and ``knn_linear_probe.png`` (k-NN top-1 against k, the probe as a line).
"""
import argparse
import json
import os
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import torch  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='k-NN (DINO weighted vote) and linear-probe accuracy of frozen backbone features on a '
                    'labelled image set (class sub-folders, or ImageNet).',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('config', help='pre-training config of the checkpoint (its model.backbone is built)')
    p.add_argument('checkpoint', help='PosFieldSSL checkpoint (or any mmpretrain/backbone-only checkpoint)')
    p.add_argument('--key', choices=['teacher', 'student'], default='teacher',
                   help='which weights of a PosFieldSSL checkpoint')
    p.add_argument('--dataset-type', choices=['CustomDataset', 'ImageNet'], default='CustomDataset',
                   help='CustomDataset: <root>/<class>/<images>; ImageNet: mmpretrain ImageNet with splits')
    p.add_argument('--data-root', help='folder with train/ and val/ (CustomDataset) or the ImageNet root')
    p.add_argument('--train-dir', help='CustomDataset training folder (instead of <data-root>/train)')
    p.add_argument('--val-dir', help='CustomDataset evaluation folder (instead of <data-root>/val)')
    p.add_argument('--img-size', type=int, default=224, help='centre-crop size (short side resized to size*256/224)')
    p.add_argument('--batch-size', type=int, default=64)
    p.add_argument('--num-workers', type=int, default=2)
    p.add_argument('--max-per-class', type=int, help='use at most this many training images per class')
    p.add_argument('--k', type=int, nargs='+', default=[10, 20, 100, 200],
                   help='neighbour counts evaluated (20 is the headline number)')
    p.add_argument('--temperature', type=float, default=0.07, help='k-NN vote temperature')
    p.add_argument('--knn-feature', choices=['cls', 'avgpool', 'cls_avgpool'], default='cls',
                   help='features for k-NN: final [CLS], mean of the patch tokens, or both concatenated')
    p.add_argument('--linear-feature', choices=['cls', 'avgpool', 'cls_avgpool'], default='cls_avgpool',
                   help='features for the linear probe')
    p.add_argument('--no-linear', action='store_true', help='skip the linear probe')
    p.add_argument('--linear-epochs', type=int, default=100)
    p.add_argument('--linear-lrs', type=float, nargs='+', default=[0.001, 0.003, 0.01, 0.03, 0.1, 0.3],
                   help='learning rates tried in parallel; chosen on a hold-out part of the training set')
    p.add_argument('--linear-batch-size', type=int, default=256)
    p.add_argument('--linear-holdout', type=float, default=0.1, help='fraction of training features held out')
    p.add_argument('--placement', choices=['whole', 'mean'], default='mean',
                   help='canvas window of the image for position-field backbones: the mean pre-training '
                        'placement (default) or the whole canvas (as the detector)')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out-dir', default='work_dirs/analysis/knn_linear_probe', help='where PNG/JSON files go')
    args = p.parse_args(argv)
    if args.dataset_type == 'ImageNet':
        if not args.data_root:
            p.error('--dataset-type ImageNet needs --data-root')
    elif not ((args.train_dir and args.val_dir) or args.data_root):
        p.error('give --data-root (with train/ and val/ inside) or both --train-dir and --val-dir')
    return args


def dataset_cfgs(args):
    from projects.analysis.features import labelled_dataset_cfg
    if args.dataset_type == 'ImageNet':
        return tuple(labelled_dataset_cfg('ImageNet', args.data_root, s, args.img_size) for s in ('train', 'val'))
    train = args.train_dir or osp.join(args.data_root, 'train')
    val = args.val_dir or osp.join(args.data_root, 'val')
    for name, d in (('training', train), ('evaluation', val)):
        if not osp.isdir(d):
            raise FileNotFoundError(f'{name} folder not found: {d} (expected <class>/<image> sub-folders)')
    return (labelled_dataset_cfg('CustomDataset', train, img_size=args.img_size),
            labelled_dataset_cfg('CustomDataset', val, img_size=args.img_size))


def plot(path, results):
    from projects.analysis.visual import pyplot, save_figure
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


def main(argv=None):
    args = parse_args(argv)
    from projects.analysis.features import (build_labelled_dataset, build_loader, extract_features,
                                            feature_variant, num_classes_of, subset_per_class)
    from projects.analysis.knn import knn_scores, topk_accuracy
    from projects.analysis.linear_probe import train_linear_probe
    from projects.common.backbone_loader import load_backbone
    from projects.posfield.evaluation import canvas_box_for
    train_cfg, val_cfg = dataset_cfgs(args)
    train_set = build_labelled_dataset(train_cfg, args.img_size)
    val_set = build_labelled_dataset(val_cfg, args.img_size)
    num_classes = num_classes_of(train_set)
    if num_classes_of(val_set) != num_classes:
        raise ValueError(f'training set has {num_classes} classes, evaluation set {num_classes_of(val_set)}: '
                         'both folders need the same class sub-folders')
    train_set = subset_per_class(train_set, args.max_per_class, args.seed)
    model = load_backbone(args.config, args.checkpoint, args.key, args.device)
    print(f'loaded {model.source}')
    kw = dict(mean=model.mean, std=model.std, bgr_to_rgb=True, box=canvas_box_for(model.cfg, args.placement))
    tr = extract_features(model.backbone, build_loader(train_set, args.batch_size, args.num_workers),
                          desc='train features', **kw)
    va = extract_features(model.backbone, build_loader(val_set, args.batch_size, args.num_workers),
                          desc='val features', **kw)
    dev = args.device
    xt, xv = feature_variant(tr, args.knn_feature).to(dev), feature_variant(va, args.knn_feature).to(dev)
    scores = knn_scores(xt, tr['labels'].to(dev), xv, num_classes, args.k, args.temperature)
    results = dict(config=args.config, checkpoint=args.checkpoint, key=args.key, source=model.source,
                   num_classes=num_classes, num_train=int(len(tr['labels'])), num_val=int(len(va['labels'])),
                   feature_dim=int(xt.shape[1]), temperature=args.temperature, knn_feature=args.knn_feature,
                   linear_feature=args.linear_feature, placement=args.placement,
                   knn={str(k): topk_accuracy(s, va['labels']) for k, s in scores.items()})
    if not args.no_linear:
        results['linear'] = train_linear_probe(
            feature_variant(tr, args.linear_feature), tr['labels'], feature_variant(va, args.linear_feature),
            va['labels'], num_classes, lrs=args.linear_lrs, epochs=args.linear_epochs,
            batch_size=args.linear_batch_size, holdout=args.linear_holdout, seed=args.seed, device=dev,
            progress=True)
    os.makedirs(args.out_dir, exist_ok=True)
    results['png'] = plot(osp.join(args.out_dir, 'knn_linear_probe.png'), results)
    out_json = osp.join(args.out_dir, 'knn_linear_probe.json')
    with open(out_json, 'w') as f:
        json.dump(results, f, indent=2)
    for k in args.k:
        acc = results['knn'][str(k)]
        print(f'k-NN k={k:<4d} T={args.temperature}: top1 {acc["top1"]:.2f}  top5 {acc["top5"]:.2f}')
    if 'linear' in results:
        lin = results['linear']
        print(f'linear probe ({args.linear_feature}, lr {lin["lr"]} by {lin["selected_by"]}): '
              f'top1 {lin["top1"]:.2f}  top5 {lin["top5"]:.2f}')
    print(f'wrote {out_json} and {results["png"]}')
    return results


if __name__ == '__main__':
    main()
