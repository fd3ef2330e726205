"""Train any config of this repository: mmpretrain pre-training or mmdet detection.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [auto|PATH]] [--amp] [--cfg-options k=v ...]
    bash tools/dist_train.sh CONFIG GPUS [...]          # torchrun; see the README

The config's own ``default_scope`` decides the registries; the repository root is put on ``sys.path`` so
``custom_imports = dict(imports=['projects.<pkg>'])`` always resolves. Bad input ends the run with one
``train.py: error: ...`` line and exit status 1 (docs/reliability.md lists what each failure looks like).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from projects.common.cli import CfgOptionsAction, add_launcher_arguments, parse_launcher_args  # noqa: E402
from projects.common.cpu_tuning import HOST_MEMORY_CHOICES  # noqa: E402
from projects.common.runner_setup import exit_on_bad_input  # noqa: E402
from projects.common.runs import run_training  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a model (pre-training or detection).')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--work-dir', help='folder for logs and checkpoints '
                        '(default: the config\'s work_dir, else ./work_dirs/<config name>)')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume training: "auto" (or no value) continues from the latest checkpoint '
                        'in the work dir; a path resumes from that checkpoint')
    parser.add_argument('--amp', action='store_true', help='mixed precision (AmpOptimWrapper, dynamic loss scale)')
    parser.add_argument('--amp-dtype', choices=['float16', 'bfloat16'], default=None,
                        help='dtype for --amp (default: the config\'s, else float16)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by total batch / auto_scale_lr.base_batch_size')
    parser.add_argument('--no-validate', action='store_true', help='skip validation during training')
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction, default={},
                        help='override config keys, e.g. train_dataloader.batch_size=8 model.backbone.arch=small')
    parser.add_argument('--host-memory', choices=HOST_MEMORY_CHOICES, default='keep',
                        help='training on the CPU only (with the rest of projects.common.cpu_tuning): keep '
                        '(default): freed host memory stays with the process for reuse, which saves the page '
                        'faults of re-allocating large tensors every step (faster CPU training, a higher resident '
                        'set); release: the C library\'s defaults (docs/benchmarks.md)')
    add_launcher_arguments(parser, 'job launcher (dist_train.sh passes pytorch, slurm_train.sh slurm)')
    return parse_launcher_args(parser, argv)


def main(argv=None):
    run_training(parse_args(argv))


if __name__ == '__main__':
    exit_on_bad_input(main)
