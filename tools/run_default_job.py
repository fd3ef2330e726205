"""The default job: data -> pre-training -> frozen dense probes and Mask R-CNN fine-tuning -> one table.

    python tools/run_default_job.py                          # preset default, seed 0
    python tools/run_default_job.py --seeds 0,1,2            # every row per seed: mean +- std, paired differences
    python tools/run_default_job.py --preset evidence        # + DINOv2-dagger, seeds 0,1,2 (time: README)
    python tools/run_default_job.py --preset smoke           # a few iterations per stage (CI)
    python tools/run_default_job.py --coco my_coco/ --unlabeled my_photos/   # your data

Per seed the rows are: the position-field teacher (ours), random initialisation, DINOv2-dagger (--with-baseline,
or the evidence preset), and, for the dense probes only, raw pixels and predicting background everywhere.
Each stage is an ordinary command of this repository (tools/data/prepare_demo_data.py, tools/train.py,
tools/model_converters/extract_backbone.py, tools/analysis/dense_probe.py, tools/test.py), run in order with a
progress line (elapsed time, ETA, live iteration count). A stage whose output is complete (its ``done.json``) is
not run again, so an interrupted job resumes where it stopped. Everything goes to --work-dir: one folder per
seed and stage, summary.json (every seed's numbers) and report.html (docs/evidence.md).
The demo detection data is a synthetic composition (generated shapes on real photos); see docs/demo_data.md.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from projects.jobs.default_job import PRESETS, run_default_job  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument('--preset', choices=sorted(PRESETS), default='default',
                   help='smoke: minutes, for CI; default: <= 40 min per seed on 2 cores; evidence: + DINOv2-dagger, '
                        '3 seeds')
    p.add_argument('--work-dir', default=osp.join('work_dirs', 'default_job'))
    p.add_argument('--data-root', default=osp.join('data', 'demo'),
                   help='where tools/data/prepare_demo_data.py builds (or has built) the demo data')
    p.add_argument('--unlabeled', help='use this folder of images for pre-training instead of the demo pool')
    p.add_argument('--coco', help='use this COCO-format folder (train/, val/, annotations/instances_{train,val}.json) '
                   'for the probes and detection instead of the demo set')
    p.add_argument('--with-baseline', action='store_true', help='also pre-train and evaluate DINOv2-dagger')
    p.add_argument('--pretrain-iters', type=int, help='override the preset')
    p.add_argument('--det-iters', type=int, help='override the preset')
    p.add_argument('--no-detection', action='store_true', help='dense probes only (no Mask R-CNN stages)')
    p.add_argument('--pretrain-options', nargs='+', default=[], metavar='KEY=VALUE',
                   help='extra --cfg-options of both pre-training configs (the scale search of docs/evidence.md: '
                        'image size, model size, ...)')
    p.add_argument('--probe-img-size', type=int, help='override the preset: image size of the dense probes')
    p.add_argument('--workers', type=int, default=2, help='dataloader workers per stage')
    p.add_argument('--seeds', help='comma-separated seeds, e.g. 0,1,2: every row is run once per seed '
                   '(pre-training, random initialisation, probes and detection all take that seed)')
    p.add_argument('--seed', type=int, help='a single seed (same as --seeds N)')
    p.add_argument('--no-report', action='store_true', help='do not write report.html')
    args = p.parse_args(argv)
    if args.seeds is not None and args.seed is not None:
        p.error('give --seeds or --seed, not both')
    try:
        args.seed_list = ([args.seed] if args.seed is not None else
                          [int(s) for s in args.seeds.split(',')] if args.seeds else None)
    except ValueError:
        p.error(f'--seeds must be comma-separated integers, got {args.seeds!r}')
    if args.seed_list is not None and len(set(args.seed_list)) != len(args.seed_list):
        p.error(f'--seeds repeats a seed: {args.seeds}')
    for name in ('pretrain_iters', 'det_iters'):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f'--{name.replace("_", "-")} must be positive')
    if args.unlabeled and not osp.isdir(args.unlabeled):
        p.error(f'--unlabeled is not a folder: {args.unlabeled}')
    if args.coco and not osp.isdir(args.coco):
        p.error(f'--coco is not a folder: {args.coco}')
    return args


def main(argv=None):
    args = parse_args(argv)
    return run_default_job(preset=args.preset, work_dir=args.work_dir, data_root=args.data_root,
                           unlabeled=args.unlabeled, coco=args.coco, with_baseline=args.with_baseline,
                           pretrain_iters=args.pretrain_iters, det_iters=args.det_iters,
                           detection=not args.no_detection, pretrain_options=args.pretrain_options,
                           probe_img_size=args.probe_img_size, workers=args.workers, seeds=args.seed_list,
                           report=not args.no_report)


if __name__ == '__main__':
    main()
