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
The work is :mod:`projects.analysis.knn_linear_probe`'s.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from projects.common.cli import add_placement_argument, backbone_parser, default_device  # noqa: E402


def parse_args(argv=None):
    p = backbone_parser('k-NN (DINO weighted vote) and linear-probe accuracy of frozen backbone features on a '
                        'labelled image set (class sub-folders, or ImageNet).')
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
    add_placement_argument(p)
    p.add_argument('--device', default=default_device())
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out-dir', default='work_dirs/analysis/knn_linear_probe', help='where PNG/JSON files go')
    args = p.parse_args(argv)
    if args.dataset_type == 'ImageNet':
        if not args.data_root:
            p.error('--dataset-type ImageNet needs --data-root')
    elif not ((args.train_dir and args.val_dir) or args.data_root):
        p.error('give --data-root (with train/ and val/ inside) or both --train-dir and --val-dir')
    return args


def main(argv=None):
    args = parse_args(argv)
    from projects.analysis.knn_linear_probe import dataset_cfgs, knn_linear_probe
    from projects.posfield.evaluation import canvas_box_for
    train_cfg, val_cfg = dataset_cfgs(args.dataset_type, args.data_root, args.train_dir, args.val_dir, args.img_size)
    return knn_linear_probe(
        args.config, args.checkpoint, train_cfg, val_cfg, args.out_dir, args.key,
        lambda cfg: canvas_box_for(cfg, args.placement), args.placement, args.img_size, args.batch_size,
        args.num_workers, args.max_per_class, args.k, args.temperature, args.knn_feature, args.linear_feature,
        args.no_linear, args.linear_epochs, args.linear_lrs, args.linear_batch_size, args.linear_holdout,
        args.device, args.seed)


if __name__ == '__main__':
    main()
