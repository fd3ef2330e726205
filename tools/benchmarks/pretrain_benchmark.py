"""Time the pre-training step of configs (and the loader), against the official DINOv2 step: the command line of
:mod:`projects.benchmarks.pretrain_benchmark`, whose description ``--help`` prints.

    python tools/benchmarks/pretrain_benchmark.py CONFIG [CONFIG ...] [--rounds 3] [--reference DINOV2_DIR] [--out F]
    python tools/benchmarks/pretrain_benchmark.py CONFIG --pipeline [--reference DINOV2_DIR] [--out loader.json]
"""
import argparse
import json
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from projects.benchmarks import pretrain_benchmark as benchmark  # noqa: E402
from projects.benchmarks.loader import PIPELINE_KINDS  # noqa: E402
from projects.common.cli import default_device  # noqa: E402
from projects.common.cpu_tuning import HOST_MEMORY_CHOICES  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=benchmark.__doc__.split('\n')[0], epilog=benchmark.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('configs', nargs='+', metavar='CONFIG', help='pre-training config(s)')
    p.add_argument('--arch', help="backbone size from VIT_ARCHS ('ViT-S', 'ViT-B', ...); default: the config's")
    p.add_argument('--batch-size', type=int, default=None, help="images per step (default: the config's)")
    p.add_argument('--warmup', type=int, default=2, help='untimed steps first')
    p.add_argument('--steps', type=int, default=7, help='timed steps per run (the median is reported)')
    p.add_argument('--rounds', type=int, default=1, help='alternating rounds over all entries')
    p.add_argument('--threads', type=int, default=None, help='torch intra-op threads in every run')
    p.add_argument('--device', default=None, help='cpu or cuda (default: cuda when available)')
    p.add_argument('--amp', choices=['none', 'bf16', 'fp16'], default='none',
                   help='mixed precision (AmpOptimWrapper); none = fp32 OptimWrapper')
    p.add_argument('--reference', metavar='DIR', help='directory with run_step.py, src/ (DINOv2) and venv/')
    p.add_argument('--reference-python', help='Python for the reference (default: DIR/venv/bin/python)')
    p.add_argument('--reference-drop-path', type=float, nargs='+', default=[0.1, 0.3],
                   help='one reference entry per drop-path rate (DINOv2 default: 0.3)')
    p.add_argument('--host-memory', choices=HOST_MEMORY_CHOICES, default='keep',
                   help="our runs' host allocator, as tools/train.py sets it: keep = freed memory is kept for "
                   'reuse (projects.common.cpu_tuning, applied on --device cpu only), release = glibc defaults')
    p.add_argument('--reference-host-memory', choices=HOST_MEMORY_CHOICES, nargs='+', default=['release'],
                   help='one reference entry per setting: release = the reference as it ships; keep = the same '
                   'allocator setting as ours (through the environment)')
    p.add_argument('--no-flops', action='store_true', help='skip the FLOP count and the GEMM peak probe')
    p.add_argument('--profile', metavar='FILE', help='profile one more train_step of each config with '
                   'torch.profiler; write the op table (self time) to FILE (config name appended)')
    p.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                   help='config overrides for our runs (mmengine syntax)')
    p.add_argument('--out', help='write all runs and the ratios as JSON here')
    p.add_argument('--pipeline', action='store_true',
                   help='time the loader side (CPU per image, one thread) instead of the training step')
    p.add_argument('--images', metavar='FOLDER', help='--pipeline: the images (default: synthetic 500x375 noise)')
    p.add_argument('--num-images', type=int, default=64, help='--pipeline: timed images per run (after --warmup)')
    p.add_argument('--child', action='store_true', help=argparse.SUPPRESS)  # one run of ours, JSON last line
    p.add_argument('--pipeline-child', choices=PIPELINE_KINDS, help=argparse.SUPPRESS)
    p.add_argument('--multicrop', type=json.loads, help=argparse.SUPPRESS)  # the crop settings, for dinov2
    p.add_argument('--data-root', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.pipeline:
        if len(args.configs) != 1:
            p.error(f'--pipeline takes one config (its train pipeline), got {len(args.configs)}')
        if args.num_images < 1 or args.warmup < 0:
            p.error('--pipeline needs --num-images >= 1 and --warmup >= 0')
        return args
    args.device = args.device or default_device()
    if args.amp != 'none' and not args.device.startswith('cuda'):
        p.error(f'--amp {args.amp} needs --device cuda (mmengine\'s AmpOptimWrapper is CUDA-only); use --amp none')
    if args.reference and not args.no_flops and args.warmup < 1:
        p.error('the reference FLOPs are counted on its first warm-up step: use --warmup >= 1 (or --no-flops)')
    if args.reference and args.device != 'cpu':
        p.error('--reference drives the CPU reference step only; use --device cpu')
    return args



def main(argv=None):
    args = parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    return benchmark.run(args, osp.abspath(__file__))


if __name__ == '__main__':
    main()
