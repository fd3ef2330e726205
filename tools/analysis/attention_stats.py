"""Attention statistics of pre-trained ViTs: NMI between attention clusters and instance masks, and the mean
attention distance of every head of every block. Several checkpoints go into one JSON and one figure.

    # NMI on a COCO-format set (+ attention distance on the same images)
    python tools/analysis/attention_stats.py CONFIG CKPT --ann-file data/coco/annotations/instances_val2017.json \\
        --img-dir data/coco/val2017 --max-images 500 --out-dir work_dirs/attn_stats \\
        --compare CONFIG_B CKPT_B --labels posfield dinov2-dagger
    # attention distance only, on any images
    python tools/analysis/attention_stats.py CONFIG CKPT --images some/folder --out-dir work_dirs/attn_stats

Writes ``attention_stats.json``, ``attention_distance.png`` (distance per block, all checkpoints), and with
``--ann-file`` ``nmi.png`` (mean NMI per checkpoint) and ``nmi_examples.png`` (partitions of a few images).
Definitions: docs/analysis.md; the work is :mod:`projects.analysis.attention_stats_report`'s.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from projects.common.cli import add_placement_argument, backbone_parser, default_device  # noqa: E402


def parse_args(argv=None):
    p = backbone_parser('NMI between attention clusters and instance masks (COCO format) and mean attention '
                        'distance per block, for one or more checkpoints.',
                        key_help='which weights of a PosFieldSSL checkpoint (applies to every model)')
    p.add_argument('--compare', nargs=2, action='append', default=[], metavar=('CONFIG', 'CHECKPOINT'),
                   help='another model to measure and plot with the first; repeatable')
    p.add_argument('--labels', nargs='+', help='one name per model (default: checkpoint file names)')
    p.add_argument('--ann-file', help='COCO-format instance annotation JSON (needed for NMI)')
    p.add_argument('--img-dir', help='folder the annotation\'s file_name entries are relative to')
    p.add_argument('--images', nargs='+', help='image files/folders for the attention distance when there is no '
                                               '--ann-file')
    p.add_argument('--max-images', type=int, default=200, help='use at most this many images (first by id)')
    p.add_argument('--img-size', type=int, help='square input side, a multiple of the patch size '
                                                '(default: the config\'s img_size)')
    p.add_argument('--nmi-layer', type=int, default=-1, help='block whose attention is clustered for NMI')
    p.add_argument('--nmi-features', choices=['cls-attn', 'tokens'], default='cls-attn',
                   help="per-patch features clustered: the [CLS] attention of each head ('cls-attn') or the "
                        "block's output patch tokens, L2-normalised ('tokens')")
    p.add_argument('--k', type=int, default=0, help='clusters per image; 0 = the number of ground-truth segments')
    p.add_argument('--skip-distance', action='store_true', help='only compute NMI')
    p.add_argument('--num-examples', type=int, default=4, help='images drawn in nmi_examples.png')
    add_placement_argument(p)
    p.add_argument('--seed', type=int, default=0, help='k-means seed')
    p.add_argument('--device', default=default_device())
    p.add_argument('--out-dir', default='work_dirs/analysis/attention_stats', help='where PNG/JSON files go')
    args = p.parse_args(argv)
    if args.ann_file and not args.img_dir:
        p.error('--ann-file needs --img-dir (the folder of its images)')
    if not args.ann_file and not args.images:
        p.error('give --ann-file/--img-dir (NMI and distance) or --images (distance only)')
    if not args.ann_file and args.skip_distance:
        p.error('--skip-distance leaves nothing to do without --ann-file')
    n_models = 1 + len(args.compare)
    if args.labels and len(args.labels) != n_models:
        p.error(f'--labels needs {n_models} names (one per model), got {len(args.labels)}')
    return args


def main(argv=None):
    args = parse_args(argv)
    from projects.analysis.attention_stats_report import coco_items, write_attention_stats
    from projects.analysis.visual import list_images
    from projects.posfield.evaluation import canvas_box_for
    if args.ann_file:
        items = coco_items(args.ann_file, args.img_dir, args.max_images)
    else:
        items = [(p, None) for p in list_images(args.images, args.max_images)]
    specs = [(args.config, args.checkpoint)] + [tuple(c) for c in args.compare]
    settings = dict(ann_file=args.ann_file, img_dir=args.img_dir, images=args.images, max_images=args.max_images,
                    placement=args.placement, seed=args.seed)
    return write_attention_stats(specs, args.labels, items, args.out_dir, bool(args.ann_file), not args.skip_distance,
                                 args.key, lambda cfg: canvas_box_for(cfg, args.placement), args.img_size,
                                 args.nmi_layer, args.nmi_features, args.k, args.seed, args.num_examples,
                                 args.device, settings)


if __name__ == '__main__':
    main()
