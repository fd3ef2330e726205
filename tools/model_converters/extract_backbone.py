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
import hashlib
import io
import os.path as osp
import sys

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from projects.common.backbone_loader import (  # noqa: E402
    KEYS,
    CheckpointMismatchError,
    check_vit_backbone,
    has_networks,
    read_state_dict,
    select_backbone,
)
from projects.common.checkpoint import atomic_write_bytes  # noqa: E402
from projects.common.errors import BadInputError  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Extract the (teacher) backbone of a pre-training checkpoint.')
    parser.add_argument('src', help='pre-training checkpoint (PosFieldSSL, or any mmengine / timm ViT checkpoint)')
    parser.add_argument('dst', help='output .pth file')
    parser.add_argument('--key', choices=KEYS, default=None,
                        help='which network of a teacher-student checkpoint (default: teacher, the EMA)')
    return parser.parse_args(argv)


def extract(src: str, dst: str, key=None) -> dict:
    state = read_state_dict(src)
    if key is not None and not has_networks(state):
        raise CheckpointMismatchError(
            f'--key {key}: {src} has no teacher/student networks (no teacher.module.backbone.* keys); it is a '
            'single-network or backbone-only file. Leave out --key.')
    kept, where = select_backbone(state, key, src)
    check_vit_backbone(kept, src, where)
    buf = io.BytesIO()
    torch.save(dict(state_dict=kept, meta=dict(source=osp.abspath(src), selected=where, key=key or 'teacher')), buf)
    atomic_write_bytes(buf.getvalue(), dst)
    digest = hashlib.sha256(buf.getvalue()).hexdigest()[:8]
    print(f'{dst}: {len(kept)} backbone tensors from {where} '
          f'({sum(v.numel() for v in kept.values()) / 1e6:.2f} M parameters); sha256 {digest}')
    return kept


def main(argv=None):
    args = parse_args(argv)
    try:
        return extract(args.src, args.dst, args.key)
    except (BadInputError, FileNotFoundError) as exc:
        if argv is not None:  # called from Python: let the caller see the exception
            raise
        sys.exit(f'extract_backbone.py: error: {exc}')


if __name__ == '__main__':
    main()
