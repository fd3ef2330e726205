"""Every config under configs/ (not _base_) trains for two optimisation steps, and evaluates once where it has
an evaluation, through the same set-up as tools/train.py, on data the test writes (data_recipes.py).

Select with ``pytest -m configs`` or by this file's name. Per config it checks: the config declares its
custom_imports and the parts of a training run; its model builds through the registries at the shipped
architecture, with parameters; the loss terms of both steps are finite; the trainable parameters (the
student's, for self-supervised configs) moved in every part of the model; the evaluation (the val loop, or a
k-NN hook) produced its metrics, all finite.
"""
import gc
import logging
import math
import os.path as osp
import shutil

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from tests.helpers import ROOT, SHIPPED_CONFIGS, load_tool
from tests.test_configs.data_recipes import TRAIN_ITERS, Checkpoints, GeneratedData, apply_recipe, recipe_for

pytestmark = pytest.mark.configs

CONFIGS = SHIPPED_CONFIGS
IDS = [osp.relpath(p, ROOT) for p in CONFIGS]


@pytest.fixture(scope='module')
def generated(tmp_path_factory):
    return GeneratedData(tmp_path_factory.mktemp('config_data'))


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    base = tmp_path_factory.mktemp('config_ckpts')
    yield Checkpoints(base)
    shutil.rmtree(base, ignore_errors=True)  # ViT-B backbones: hundreds of MB that pytest would keep


class RunRecorder(Hook):
    """Records the trainable parameters at the start, each step's log variables and each evaluation."""

    priority = 'LOWEST'

    def __init__(self):
        self.start = {}
        self.steps = []
        self.eval_metrics = []
        self.eval_samples = 0
        self.detections = 0  # predicted instances, for detectors

    @staticmethod
    def model(runner):
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    def before_train(self, runner):  # after init_weights and checkpoint loading
        self.start = {n: p.detach().clone() for n, p in self.model(runner).named_parameters() if p.requires_grad}

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.steps.append({k: torch.as_tensor(v, dtype=torch.float64) for k, v in (outputs or {}).items()})

    def _eval_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.eval_samples += len(outputs)
        self.detections += sum(len(o.pred_instances) for o in outputs if 'pred_instances' in o)

    def _eval_epoch(self, runner, metrics=None):
        self.eval_metrics.append(dict(metrics or {}))

    after_val_iter = after_test_iter = _eval_iter
    after_val_epoch = after_test_epoch = _eval_epoch


def _release(runner):
    """Forget the runner's global instances: mmdet's runtime names its visualizer 'visualizer', so the next
    mmdet runner in this process would get this one back, still writing to this (deleted) work dir."""
    from mmengine.logging import MessageHub, MMLogger
    for handler in list(runner.logger.handlers):
        if isinstance(handler, logging.FileHandler):
            handler.close()
            runner.logger.removeHandler(handler)
    for obj in (runner.visualizer, runner.message_hub, runner.logger):
        type(obj)._instance_dict.pop(obj.instance_name, None)
    for cls in (MessageHub, MMLogger):  # the current instances must still exist
        if not cls._instance_dict:
            cls.get_instance('mmengine')


def _has_loop(cfg, mode):
    return all(cfg.get(f'{mode}_{k}') is not None for k in ('dataloader', 'evaluator', 'cfg'))


def _is_detector(runner):
    return runner.cfg.get('default_scope') == 'mmdet'


def _finite(value):
    return math.isfinite(float(value))


def test_every_config_has_a_data_recipe():
    assert len(CONFIGS) > 30, CONFIGS
    missing = []
    for path in CONFIGS:
        try:
            recipe_for(path)
        except LookupError as exc:
            missing.append(str(exc))
    assert not missing, '\n'.join(missing)


def test_a_config_without_a_recipe_fails_with_its_name():
    with pytest.raises(LookupError, match=r'config configs/new_family/x\.py has no data recipe in '
                                          r'tests/test_configs/data_recipes\.py'):
        recipe_for(osp.join(ROOT, 'configs', 'new_family', 'x.py'))


@pytest.mark.parametrize('path', CONFIGS, ids=IDS)
def test_config_runs(path, generated, checkpoints, tmp_path):
    from projects.common.runner_setup import adapt_to_device, build_runner, clear_config_errors, load_config
    from projects.common.runs import merge_train_args
    tool = load_tool('tools/train.py')
    work_dir = str(tmp_path / 'work')
    args = tool.parse_args([path, '--work-dir', work_dir])
    cfg = load_config(path, args.cfg_options)
    assert 'custom_imports' in cfg, f'{path}: configs must declare custom_imports'
    for key in ('train_dataloader', 'optim_wrapper', 'train_cfg'):
        assert key in cfg, f'{path}: missing {key}'
    apply_recipe(cfg, path, generated, checkpoints, work_dir)
    cfg = merge_train_args(cfg, args)
    adapt_to_device(cfg)
    # the evaluation: the val loop during training, else the test loop once after it
    eval_mode = 'val' if _has_loop(cfg, 'val') else 'test' if _has_loop(cfg, 'test') else None
    knn_hooks = [h for h in cfg.get('custom_hooks', None) or [] if h.get('type') == 'KNNEvalHook']
    runner = build_runner(cfg, path)
    recorder = RunRecorder()
    runner.register_hook(recorder)
    try:
        model = recorder.model(runner)
        assert isinstance(model, torch.nn.Module)
        assert sum(p.numel() for p in model.parameters()) > 0
        with clear_config_errors(cfg, path):
            runner.train()
            if eval_mode == 'test':
                runner.test()

        # two optimisation steps, every logged loss term finite
        assert runner.iter == TRAIN_ITERS and len(recorder.steps) == TRAIN_ITERS, (runner.iter, len(recorder.steps))
        for i, logs in enumerate(recorder.steps):
            assert 'loss' in logs, f'step {i}: no loss in {sorted(logs)}'
            bad = {k: v.tolist() for k, v in logs.items() if not torch.isfinite(v).all()}
            assert not bad, f'step {i}: non-finite {bad}'

        # the trainable parameters moved in every top-level part of the model (backbone, neck, heads)
        assert recorder.start, 'no trainable parameters'
        params = dict(recorder.model(runner).named_parameters())
        parts = {}
        for name, before in recorder.start.items():
            part = name.split('.')[0]
            parts[part] = parts.get(part, False) or not torch.equal(before, params[name].detach())
        unchanged = sorted(p for p, moved in parts.items() if not moved)
        assert not unchanged, f'no parameter changed in {unchanged} after {TRAIN_ITERS} steps'

        # one evaluation where the config has one, with finite metrics
        if eval_mode is None:
            assert not recorder.eval_metrics
        else:
            assert len(recorder.eval_metrics) == 1, recorder.eval_metrics
            assert recorder.eval_samples == len(getattr(runner, f'{eval_mode}_dataloader').dataset)
            metrics = recorder.eval_metrics[0]
            assert all(_finite(v) for v in metrics.values()), metrics
            # An untrained 80-class Mask R-CNN scores every box near 1/81, under its test score threshold
            # (0.05): with no detection at all, mmdet's CocoMetric reports nothing ("results ... empty").
            # Detectors that do detect, and every other model, must report metrics.
            if recorder.detections or not _is_detector(runner):
                assert metrics, 'the evaluation produced no metrics'
        hooks = [h for h in runner.hooks if type(h).__name__ == 'KNNEvalHook']
        assert len(hooks) == len(knn_hooks)
        for hook in hooks:
            assert set(hook.last_results) >= {'knn/top1', 'knn/top5'}, hook.last_results
            assert all(0.0 <= v <= 100.0 for v in hook.last_results.values()), hook.last_results
    finally:
        _release(runner)
        del runner
        gc.collect()
        shutil.rmtree(work_dir, ignore_errors=True)  # checkpoints of ViT-B pre-training are gigabytes
