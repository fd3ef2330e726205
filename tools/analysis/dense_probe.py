"""Dense frozen-feature probes of a backbone on a COCO-format folder: linear per-patch mIoU, k-NN on instance
crops and the localisation probe (box edges regressed from each patch inside an instance, scored by IoU)
(projects/probes, docs/evidence.md), optionally with the floor rows (raw pixels; the trivial predictors: all
background, the most frequent class, the mean box targets).

    python tools/analysis/dense_probe.py work_dirs/default_job/pretrain_posfield/iter_400.pth --coco data/demo/coco \\
        --out probe.json --floors
    python tools/analysis/dense_probe.py work_dirs/default_job/pretrain_posfield/backbone.pth \\
        --config configs/demo/posfield_vit-mini-p16_demo-pool.py --coco my_coco/ --out probe.json
    python tools/analysis/dense_probe.py configs/demo/posfield_vit-mini-p16_demo-pool.py --coco data/demo/coco \\
        --seed 1 --out random.json            # a config alone: the randomly initialised backbone (seeded)

MODEL is a pre-training checkpoint (teacher by default; its config is read from the checkpoint unless --config is
given), a backbone-only file from tools/model_converters/extract_backbone.py (config from --config, or from the
pre-training checkpoint it names), or a config (random initialisation). Backbone files without a [CLS] token are
run without one, as the detector runs them (--without-cls does the same for any backbone).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from projects.common.cli import CfgOptionsAction  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument('model', help='pre-training checkpoint, extract_backbone.py output, or a config (random init)')
    p.add_argument('--coco', required=True,
                   help='COCO-format folder: annotations/instances_{train,val}.json, images in train/ and val/')
    p.add_argument('--out', required=True, help='output JSON file')
    p.add_argument('--config', help='pre-training config of MODEL (default: the config stored in the checkpoint)')
    p.add_argument('--key', choices=['teacher', 'student'], default='teacher',
                   help='which network of a pre-training checkpoint')
    p.add_argument('--name', help='row name (default: from MODEL)')
    p.add_argument('--without-cls', action='store_true',
                   help='run the backbone without its [CLS] token, as the detector does (automatic for backbone '
                        'files that have none)')
    p.add_argument('--floors', action='store_true',
                   help='add the floor rows: raw pixels, and the trivial predictors (all background; the mean '
                        'training box targets for the localisation probe)')
    p.add_argument('--img-size', type=int, default=256, help='images are resized to this square size')
    p.add_argument('--crop-size', type=int, default=64, help='instance crops are resized to this square size')
    p.add_argument('--epochs', type=int, default=20, help='linear probe epochs')
    p.add_argument('--seed', type=int, default=0, help='seed of the probe and of a random initialisation')
    p.add_argument('--lrs', type=float, nargs='+', metavar='LR',
                   help='learning-rate grid of every linear probe, one chosen per probe by cross-validation over '
                        'the train images (default: projects.probes.dense.PROBE_LRS)')
    p.add_argument('--max-images', type=int, help='use at most this many images per split')
    p.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction, metavar='KEY=VALUE',
                   help='override settings of the config (as tools/train.py --cfg-options)')
    args = p.parse_args(argv)
    if not osp.exists(args.model):
        p.error(f'MODEL not found: {args.model}')
    if args.config and not osp.isfile(args.config):
        p.error(f'--config not found: {args.config}')
    if not osp.isdir(args.coco):
        p.error(f'--coco is not a folder: {args.coco}')
    if args.lrs is not None and any(lr <= 0 for lr in args.lrs):
        p.error(f'--lrs must be positive, got {args.lrs}')
    for name in ('img_size', 'crop_size', 'epochs'):
        if getattr(args, name) < 1:
            p.error(f'--{name.replace("_", "-")} must be positive')
    return args


def main(argv=None):
    args = parse_args(argv)
    import projects.posfield  # noqa: F401  (registers PosFieldViT)
    from projects.probes.dense import PROBE_LRS
    from projects.probes.probe_run import run_dense_probe
    return run_dense_probe(args.model, args.coco, args.out, args.config, args.key, args.name, args.without_cls,
                           args.floors, args.img_size, args.crop_size, args.epochs, args.seed, args.max_images,
                           args.cfg_options, lrs=tuple(args.lrs or PROBE_LRS))


if __name__ == '__main__':
    from projects.common.runner_setup import exit_on_bad_input
    exit_on_bad_input(main)
