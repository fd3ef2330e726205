"""Pictures of a learned position field: its first three principal components as RGB, both as pre-trained
(Hf x Wf) and as sampled for a detector input, and the cosine similarity of every location to a few
reference locations.

    python tools/analysis/position_field.py CONFIG CKPT --out-dir work_dirs/field
    python tools/analysis/position_field.py CONFIG CKPT --det-size 1024 --refs 0.5,0.5 0.1,0.1 --out-dir ...

For a detector input of --det-size pixels and the backbone's patch size p, the field is sampled on a
(det-size/p)^2 grid with ``PositionField.for_whole_image`` for the 'whole' placement (image = whole canvas,
the detector default) and for the 'mean' pre-training placement (docs/analysis.md). A baseline with an
ordinary learned ``pos_embed`` (``pos_embed_type='interpolate'``, or a plain ViT) is shown the same way, its
patch embeddings taken as the field and resized bicubically as mmpretrain does. The work is
:mod:`projects.posfield.evaluation.position_field`'s.

Writes ``position_field_pca.png``, ``position_field_similarity.png`` and ``position_field.json``.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from projects.common.cli import backbone_parser  # noqa: E402


def _ref(text):
    try:
        y, x = (float(v) for v in text.split(','))
    except ValueError:
        raise argparse.ArgumentTypeError(f'a reference location is "y,x" in canvas fractions, got {text!r}')
    if not (0 <= y <= 1 and 0 <= x <= 1):
        raise argparse.ArgumentTypeError(f'reference location {text!r} is outside [0, 1] x [0, 1]')
    return y, x


def parse_args(argv=None):
    p = backbone_parser('Visualise a learned position field: PCA -> RGB as pre-trained and as sampled for a detector '
                        'input, and cosine-similarity maps to reference locations.')
    p.add_argument('--det-size', type=int, default=1024, help='detector input side in pixels')
    p.add_argument('--det-patch', type=int, help='detector patch size (default: the backbone\'s)')
    p.add_argument('--refs', type=_ref, nargs='+',
                   default=[(0.25, 0.25), (0.25, 0.75), (0.5, 0.5), (0.75, 0.25), (0.75, 0.75)],
                   help='reference locations "y,x" as fractions of each picture (0,0 = top left): of the canvas '
                        'for the field as pre-trained, of the detector image for the sampled grids')
    p.add_argument('--out-dir', default='work_dirs/analysis/position_field', help='where PNG/JSON files go')
    args = p.parse_args(argv)
    if args.det_size < 1 or (args.det_patch is not None and args.det_patch < 1):
        p.error('--det-size and --det-patch must be positive')
    return args


def main(argv=None):
    args = parse_args(argv)
    from projects.posfield.evaluation.position_field import position_field_figures
    return position_field_figures(args.config, args.checkpoint, args.key, args.det_size, args.det_patch, args.refs,
                                  args.out_dir)


if __name__ == '__main__':
    main()
