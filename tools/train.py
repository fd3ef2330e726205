"""Train any config of this repository: mmpretrain pre-training or mmdet detection.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [auto|PATH]] [--amp] [--cfg-options k=v ...]
    bash tools/dist_train.sh CONFIG GPUS [...]          # torchrun; see the README

The config's own ``default_scope`` decides the registries; the repository root is put on ``sys.path`` so
``custom_imports = dict(imports=['projects.<pkg>'])`` always resolves. Bad input ends the run with one
``train.py: error: ...`` line and exit status 1 (docs/reliability.md lists what each failure looks like).
"""
import argparse
import os
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from projects.common import cpu_tuning  # noqa: E402
from projects.common.checkpoint import latest_checkpoint, remove_stale_temporaries  # noqa: E402
from projects.common.runner_setup import (  # noqa: E402
    adapt_to_device,
    build_runner,
    clear_config_errors,
    exit_on_bad_input,
    is_rank_zero,
    load_config,
)


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
    parser.add_argument('--cfg-options', nargs='+', action=_DictAction, default={},
                        help='override config keys, e.g. train_dataloader.batch_size=8 model.backbone.arch=small')
    parser.add_argument('--host-memory', choices=cpu_tuning.HOST_MEMORY_CHOICES, default='keep',
                        help='training on the CPU only (with the rest of projects.common.cpu_tuning): keep '
                        '(default): freed host memory stays with the process for reuse, which saves the page '
                        'faults of re-allocating large tensors every step (faster CPU training, a higher resident '
                        'set); release: the C library\'s defaults (docs/benchmarks.md)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher (dist_train.sh passes pytorch, slurm_train.sh slurm)')
    # torch.distributed.launch passes --local_rank, torchrun sets LOCAL_RANK; accept both spellings.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


class _DictAction(argparse.Action):
    """``mmengine.config.DictAction`` imported lazily so ``--help`` works before the stack imports."""

    def __call__(self, parser, namespace, values, option_string=None):
        from mmengine.config import DictAction

        from projects.common.runner_setup import check_key_value_pairs
        check_key_value_pairs(option_string, values)  # mmengine fails on an item without '=' with no key named
        DictAction(self.option_strings, self.dest)(parser, namespace, values, option_string)


def merge_args(cfg, args):
    """Apply command-line choices to the config (same priorities as mmdet / mmpretrain)."""
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])

    if args.amp:
        wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if wrapper not in ('AmpOptimWrapper', 'mmengine.AmpOptimWrapper'):
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.amp_dtype is not None:
        cfg.optim_wrapper.dtype = args.amp_dtype

    if args.resume == 'auto':  # the newest complete checkpoint, even one last_checkpoint does not name yet
        cfg.resume = True
        cfg.load_from = latest_checkpoint(cfg.work_dir)
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise FileNotFoundError(f'--resume {args.resume}: no such checkpoint file')
        cfg.resume = True
        cfg.load_from = args.resume

    if args.auto_scale_lr:
        if not cfg.get('auto_scale_lr') or 'base_batch_size' not in cfg.auto_scale_lr:
            raise KeyError(f'{args.config}: --auto-scale-lr needs auto_scale_lr.base_batch_size in the config')
        cfg.auto_scale_lr.enable = True

    if args.no_validate:
        for key in ('val_dataloader', 'val_evaluator', 'val_cfg'):
            cfg[key] = None
    return cfg


def apply_cpu_tuning(args) -> dict:
    """The CPU tuning (:func:`projects.common.cpu_tuning.apply`) where training runs on the CPU (no CUDA
    device); nothing otherwise. Returns what is in effect."""
    import torch
    if torch.cuda.is_available():
        return {}
    return cpu_tuning.apply(host_memory=args.host_memory)


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    cfg = merge_args(cfg, args)
    apply_cpu_tuning(args)  # before the model and the data exist
    if is_rank_zero():  # a run killed while writing a checkpoint left its temporary file behind
        for path in remove_stale_temporaries(cfg.work_dir) if osp.isdir(cfg.work_dir) else []:
            print(f'removed the stale temporary file {path} (a checkpoint write that was interrupted)')
    if args.resume == 'auto' and cfg.load_from is None and is_rank_zero():
        print(f'--resume: no checkpoint in {cfg.work_dir} yet; training starts at iteration 0')
    adapt_to_device(cfg)
    runner = build_runner(cfg, args.config)
    with clear_config_errors(cfg, args.config):  # datasets and hooks are built lazily, in train()
        runner.train()
    # Leave the process group before exit: a gloo group torn down by interpreter shutdown can abort a rank
    # ("terminate called without an active exception") after training has finished.
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == '__main__':
    exit_on_bad_input(main)
