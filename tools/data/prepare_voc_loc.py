"""Build the offline classify-and-localise set (Pascal VOC layout, one object per image) from the demo data.

    python tools/data/prepare_voc_loc.py [--demo-root data/demo] [--out data/voc_loc] [--per-class-train 60]
        [--per-class-test 25] [--image-size 128] [--seed 0] [--force]

Classes: ``tree`` (real DeepForest aerial photos and boxes, PyPI ``deepforest`` wheel, about 21 MB once)
and the six shape classes (synthetic composition on real photos of the demo pool). Needs the demo data
(``tools/data/prepare_demo_data.py --data-root DEMO_ROOT``) first. Returns at once when
``<out>/manifest.json`` matches the arguments. What is built and why: docs/localization.md.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from projects.demo_data.command import run_build  # noqa: E402
from projects.demo_data.voc_loc import build_voc_loc  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--demo-root', default='data/demo', help='folder built by tools/data/prepare_demo_data.py')
    p.add_argument('--out', default='data/voc_loc', help='output VOC folder (git-ignored data/ by default)')
    p.add_argument('--per-class-train', type=int, default=60, help='trainval images per class')
    p.add_argument('--per-class-test', type=int, default=25, help='test images per class')
    p.add_argument('--image-size', type=int, default=128, help='side of the square images (px)')
    p.add_argument('--seed', type=int, default=0, help='seed of the crops and the composition')
    p.add_argument('--max-neighbour-cover', type=float, default=0.25,
                   help='a tree crop is kept only if no other annotated tree has more than this share of its '
                        'box inside it')
    p.add_argument('--cache-dir', default=None, help='where the deepforest wheel goes (default <demo-root>/downloads)')
    p.add_argument('--no-installed', action='store_true', help='download the pinned wheel even if installed')
    p.add_argument('--force', action='store_true', help='rebuild')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)

    def report(m, seconds):
        print(f'[voc-loc] done in {seconds:.1f} s: {osp.abspath(args.out)}')
        for split, counts in m['counts'].items():
            print(f'[voc-loc]   {split}: ' + ', '.join(f'{c} {n}' for c, n in counts.items()))
    return run_build('prepare_voc_loc', lambda: build_voc_loc(
        args.out, args.demo_root, per_class_train=args.per_class_train, per_class_test=args.per_class_test,
        image_size=args.image_size, seed=args.seed, max_neighbour_cover=args.max_neighbour_cover,
        cache_dir=args.cache_dir, use_installed=not args.no_installed, force=args.force), report)

if __name__ == '__main__':
    sys.exit(main())
