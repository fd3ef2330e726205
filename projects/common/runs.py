"""A training run and a test run of a config, as tools/train.py and tools/test.py start them from their parsed
arguments (the argument names are the tools' options)."""
import json
import os.path as osp

from . import cpu_tuning
from .backbone_loader import check_checkpoint_fits_model
from .checkpoint import atomic_write_bytes, latest_checkpoint, remove_stale_temporaries
from .runner_setup import adapt_to_device, build_runner, clear_config_errors, is_rank_zero, load_config


def set_launcher_and_work_dir(cfg, args):
    """``--launcher``, and the work dir: ``--work-dir``, else the config's, else ./work_dirs/<config name>."""
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    return cfg


def merge_train_args(cfg, args):
    """Apply tools/train.py's options to the config (same priorities as mmdet / mmpretrain)."""
    set_launcher_and_work_dir(cfg, args)
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


def apply_cpu_tuning(host_memory: str) -> dict:
    """The CPU tuning (:func:`projects.common.cpu_tuning.apply`) where training runs on the CPU (no CUDA
    device); nothing otherwise. Returns what is in effect."""
    from .cli import cuda_available
    if cuda_available():
        return {}
    return cpu_tuning.apply(host_memory=host_memory)


def run_training(args) -> None:
    """tools/train.py: train ``args.config`` with the tool's options applied."""
    cfg = merge_train_args(load_config(args.config, args.cfg_options), args)
    apply_cpu_tuning(args.host_memory)  # before the model and the data exist
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


def run_test(args) -> dict:
    """tools/test.py: evaluate ``args.checkpoint`` with ``args.config``'s test loop; returns the metrics (and
    writes them to ``args.out``)."""
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint file not found: {args.checkpoint}')
    cfg = set_launcher_and_work_dir(load_config(args.config, args.cfg_options), args)
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
