"""Write a backbone-only checkpoint from a pre-training checkpoint (teacher by default).

    python tools/model_converters/extract_backbone.py work_dirs/pretrain/iter_N.pth backbone.pth [--key student]

The output ``{'state_dict': {...}, 'meta': {...}}`` holds every backbone tensor without prefix, the [CLS] token
included, so it loads everywhere a backbone is loaded: into the detector with
``model.backbone.init_cfg.checkpoint=backbone.pth`` (which ignores the pre-training-only tokens) and into the
analysis tools; the coverage check of :mod:`projects.common.backbone_loader` runs again there.
The input must hold a ViT backbone (a position-field pre-training checkpoint, an mmpretrain or timm ViT, or a
backbone-only ViT file); anything else is refused, naming what was found. ``--key`` chooses between the
teacher and the student of a pre-training checkpoint and is refused for a file that has neither.
The output is written atomically: an interrupted run never leaves a truncated file.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from projects.common.backbone_loader import KEYS, extract_backbone  # noqa: E402
from projects.common.errors import BadInputError  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Extract the (teacher) backbone of a pre-training checkpoint.')
    parser.add_argument('src', help='pre-training checkpoint (PosFieldSSL, or any mmengine / timm ViT checkpoint)')
    parser.add_argument('dst', help='output .pth file')
    parser.add_argument('--key', choices=KEYS, default=None,
                        help='which network of a teacher-student checkpoint (default: teacher, the EMA)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        return extract_backbone(args.src, args.dst, args.key)
    except (BadInputError, FileNotFoundError) as exc:
        if argv is not None:  # called from Python: let the caller see the exception
            raise
        sys.exit(f'extract_backbone.py: error: {exc}')


if __name__ == '__main__':
    main()
