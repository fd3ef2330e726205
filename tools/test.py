"""Evaluate a checkpoint with a config's test loop and write the metrics.

    python tools/test.py CONFIG CHECKPOINT [--out metrics.json] [--show-dir DIR] [--cfg-options k=v ...]
    bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [...]

For the detection configs this prints COCO AP^box / AP^mask (``coco/bbox_mAP``, ``coco/segm_mAP`` with
``_50``, ``_75``, ``_s``, ``_m``, ``_l``); ``--out`` writes the same numbers as JSON.
A checkpoint that does not fit the config's model (a pre-training checkpoint, a detector of another width) is
refused with its missing, unexpected and mis-shaped keys, instead of being evaluated as a partly random model.
"""
import argparse
import json
import os
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from projects.common.backbone_loader import check_checkpoint_fits_model  # noqa: E402
from projects.common.checkpoint import atomic_write_bytes  # noqa: E402
from projects.common.runner_setup import (  # noqa: E402
    adapt_to_device,
    build_runner,
    clear_config_errors,
    exit_on_bad_input,
    load_config,
)


class _DictAction(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        from mmengine.config import DictAction

        from projects.common.runner_setup import check_key_value_pairs
        check_key_value_pairs(option_string, values)  # mmengine fails on an item without '=' with no key named
        DictAction(self.option_strings, self.dest)(parser, namespace, values, option_string)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (evaluate) a checkpoint.')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file (.pth) to evaluate')
    parser.add_argument('--work-dir', help='folder for the test log (default: ./work_dirs/<config name>)')
    parser.add_argument('--out', help='write the metrics as JSON to this file')
    parser.add_argument('--show-dir', help='write images with the predictions drawn into this folder '
                        '(relative paths are inside the run\'s timestamped log folder)')
    parser.add_argument('--interval', type=int, default=1, help='with --show-dir: draw every N-th image')
    parser.add_argument('--score-thr', type=float, default=0.3, help='with --show-dir: min score drawn')
    parser.add_argument('--cfg-options', nargs='+', action=_DictAction, default={},
                        help='override config keys, e.g. test_dataloader.batch_size=1')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def enable_visualization(cfg, show_dir: str, interval: int, score_thr: float) -> None:
    """Switch on the config's visualization hook (mmdet's DetVisualizationHook or mmpretrain's)."""
    hooks = cfg.get('default_hooks') or {}
    hook = hooks.get('visualization')
    if hook is None:
        raise KeyError('--show-dir: the config has no default_hooks.visualization hook to draw with')
    kind = str(hook.get('type', '')).split('.')[-1]
    if kind == 'DetVisualizationHook':
        hook.update(draw=True, test_out_dir=show_dir, interval=interval, score_thr=score_thr)
    else:  # mmpretrain's VisualizationHook
        hook.update(enable=True, out_dir=show_dir, interval=interval)


def _jsonable(value):
    """Metric values are Python, numpy or torch scalars, or strings (e.g. mmdet's copypaste line)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return value if isinstance(value, (str, list, dict)) else str(value)


def main(argv=None):
    args = parse_args(argv)
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint file not found: {args.checkpoint}')
    cfg = load_config(args.config, args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    cfg.resume = False
    if args.show_dir:
        enable_visualization(cfg, args.show_dir, args.interval, args.score_thr)
    if cfg.get('test_dataloader') is None:
        raise KeyError(f'{args.config}: no test_dataloader / test_evaluator in the config; nothing to test')
    adapt_to_device(cfg)
    runner = build_runner(cfg, args.config)
    # mmengine loads non-strictly and only warns: a pre-training checkpoint or a detector of another width
    # would be evaluated as a partly random model. Refuse, naming the keys.
    from mmengine.model import is_model_wrapper
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    check_checkpoint_fits_model(model, args.checkpoint)
    with clear_config_errors(cfg, args.config):
        metrics = runner.test()
    from mmengine.dist import is_main_process
    if args.out and is_main_process():
        record = dict(config=osp.abspath(args.config), checkpoint=osp.abspath(args.checkpoint),
                      metrics={k: _jsonable(v) for k, v in metrics.items()})
        atomic_write_bytes(json.dumps(record, indent=2).encode(), args.out)
        print(f'metrics written to {args.out}')
    return metrics


if __name__ == '__main__':
    exit_on_bad_input(main)
