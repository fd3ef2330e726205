"""Write a backbone-only checkpoint from a pre-training checkpoint (teacher by default).

    python tools/model_converters/extract_backbone.py work_dirs/pretrain/iter_N.pth backbone.pth [--key student]

The output ``{'state_dict': {...}, 'meta': {...}}`` holds the backbone tensors without prefix (tokens used only
in pre-training - [CLS], its position, the mask tokens - are dropped) and loads into the detector with
``model.backbone.init_cfg.checkpoint=backbone.pth``, where the coverage check runs again.
It is written atomically: an interrupted run never leaves a truncated file.
"""
import argparse
import hashlib
import io
import os.path as osp
import sys

import torch

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from projects.common.checkpoint import atomic_write_bytes  # noqa: E402
from projects.posfield.models.utils.backbone_checkpoint import (IGNORED_SOURCE_KEYS, KEYS,  # noqa: E402
                                                              read_state_dict, select_backbone)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Extract the (teacher) backbone of a pre-training checkpoint.')
    parser.add_argument('src', help='pre-training checkpoint (PosFieldSSL, or any mmengine / timm ViT checkpoint)')
    parser.add_argument('dst', help='output .pth file')
    parser.add_argument('--key', choices=KEYS, default='teacher',
                        help='which network of a teacher-student checkpoint (default: teacher, the EMA)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    state, where = select_backbone(read_state_dict(args.src), args.key, args.src)
    kept = {k: v for k, v in state.items() if not k.startswith(IGNORED_SOURCE_KEYS)}
    dropped = sorted(set(state) - set(kept))
    buf = io.BytesIO()
    torch.save(dict(state_dict=kept, meta=dict(source=osp.abspath(args.src), selected=where, key=args.key)), buf)
    atomic_write_bytes(buf.getvalue(), args.dst)
    digest = hashlib.sha256(buf.getvalue()).hexdigest()[:8]
    print(f'{args.dst}: {len(kept)} backbone tensors from {where} '
          f'({sum(v.numel() for v in kept.values()) / 1e6:.2f} M parameters); '
          f'dropped pre-training-only tensors: {", ".join(dropped) or "none"}; sha256 {digest}')
    return kept


if __name__ == '__main__':
    main()
