"""Draw what a pre-trained ViT attends to: the [CLS] query's attention in every head of one block, and the
attention of chosen patches, overlaid on the input images. One checkpoint, or two side by side.

    python tools/analysis/attention_maps.py CONFIG CHECKPOINT --images demo/ --out-dir work_dirs/attn
    python tools/analysis/attention_maps.py CONFIG CKPT --config2 CONFIG_B --checkpoint2 CKPT_B \\
        --labels posfield dinov2-dagger --images a.jpg b.jpg --query-patch 7 7 --query-patch 3 10

Writes ``attn_<image>.png`` per image (one row per checkpoint: image, [CLS] attention averaged over heads,
each head, then each query patch's head-averaged attention with the query marked), ``attention_maps.json``
(settings, files, per-head entropy of the [CLS] attention) and ``attention_maps.npz`` (the raw maps).
Weights are recomputed from each block's qkv projection by a forward hook (see docs/analysis.md); the work is
:mod:`projects.analysis.attention_maps`'s.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from projects.common.cli import add_placement_argument, backbone_parser, default_device  # noqa: E402


def parse_args(argv=None):
    p = backbone_parser('Attention maps of a pre-trained ViT ([CLS] per head and from chosen patches), overlaid on '
                        'images; optionally two checkpoints side by side.',
                        key_help='which weights of a PosFieldSSL checkpoint: the EMA teacher or the student',
                        config_help='pre-training config the checkpoint was trained with (its model.backbone is built)')
    p.add_argument('--config2', help='config of a second model to show below the first')
    p.add_argument('--checkpoint2', help='checkpoint of the second model')
    p.add_argument('--key2', choices=['teacher', 'student'], help='weights of the second model (default: --key)')
    p.add_argument('--labels', nargs='+', help='row titles, one per model (default: checkpoint file names)')
    p.add_argument('--images', nargs='+', required=True, help='image files and/or folders (searched recursively)')
    p.add_argument('--max-images', type=int, default=8, help='use at most this many images')
    p.add_argument('--img-size', type=int, nargs='+',
                   help='input size: S (square) or H W, multiples of the patch size (default: the config\'s img_size)')
    p.add_argument('--layer', type=int, default=-1, help='block whose attention is drawn (negative: from the end)')
    p.add_argument('--query-patch', type=int, nargs=2, action='append', metavar=('ROW', 'COL'),
                   help='patch (row, col) on the patch grid whose attention is drawn; repeatable '
                        '(default: the centre patch)')
    add_placement_argument(p, 'default, near the training statistics')
    p.add_argument('--device', default=default_device())
    p.add_argument('--out-dir', default='work_dirs/analysis/attention_maps', help='where PNG/JSON/NPZ files go')
    args = p.parse_args(argv)
    if (args.config2 is None) != (args.checkpoint2 is None):
        p.error('--config2 and --checkpoint2 go together')
    n_models = 1 + (args.config2 is not None)
    if args.labels and len(args.labels) != n_models:
        p.error(f'--labels needs {n_models} names (one per model), got {len(args.labels)}')
    if args.img_size and len(args.img_size) not in (1, 2):
        p.error('--img-size takes S or H W')
    return args


def main(argv=None):
    args = parse_args(argv)
    from projects.analysis.attention_maps import write_attention_maps
    from projects.analysis.visual import list_images
    from projects.common.backbone_loader import load_backbone
    from projects.posfield.evaluation import canvas_box_for
    images = list_images(args.images, args.max_images)
    specs = [(args.config, args.checkpoint, args.key)]
    if args.config2:
        specs.append((args.config2, args.checkpoint2, args.key2 or args.key))
    labels = args.labels or [osp.splitext(osp.basename(s[1]))[0] + f' ({s[2]})' for s in specs]
    models = [load_backbone(c, ck, k, args.device) for c, ck, k in specs]
    for m in models:
        print(f'loaded {m.source}')
    return write_attention_maps(models, labels, images, args.out_dir, lambda cfg: canvas_box_for(cfg, args.placement),
                                args.placement, args.layer, args.query_patch, args.img_size, args.device)


if __name__ == '__main__':
    main()
