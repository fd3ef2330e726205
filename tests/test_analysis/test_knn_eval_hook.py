"""KNNEvalHook inside a real (tiny, CPU) pre-training run."""
import os.path as osp

import pytest

import projects.posfield.evaluation  # noqa: F401  (registers KNNEvalHook)
from projects.common.runner_setup import build_runner, load_config
from projects.posfield.evaluation import KNNEvalHook
from tests.helpers import TINY_PRETRAIN, write_images


def _hook_cfg(labelled_dir, **kw):
    return dict(type='KNNEvalHook', train_dataset=dict(type='CustomDataset', data_root=osp.join(labelled_dir, 'train')),
                val_dataset=dict(type='CustomDataset', data_root=osp.join(labelled_dir, 'val')), img_size=64,
                batch_size=4, num_workers=0, **kw)


def test_knn_eval_hook_logs_teacher_knn_during_pretraining(tmp_path, labelled_dir):
    data = write_images(tmp_path / 'imgs', n=4)
    cfg = load_config(TINY_PRETRAIN, {'train_dataloader.dataset.data_root': data, 'train_cfg.max_iters': 2})
    cfg.work_dir = str(tmp_path / 'wd')
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=100)
    cfg.custom_hooks = [_hook_cfg(labelled_dir, interval=2, by_epoch=False, linear_probe=True,
                                  linear_probe_epochs=5)]
    runner = build_runner(cfg)
    runner.train()
    hook = next(h for h in runner.hooks if isinstance(h, KNNEvalHook))
    res = hook.last_results
    assert set(res) == {'knn/top1', 'knn/top5', 'linear/top1'}
    assert 0.0 <= res['knn/top1'] <= 100.0 and res['knn/top5'] == 100.0  # 2 classes: top-5 is certain
    buf = runner.message_hub.get_scalar('knn/top1')
    assert buf.current() == res['knn/top1']
    assert len(buf.data[0]) == 1  # evaluated at iteration 2 only: the end-of-training call does not repeat it
    backbone, _ = hook._backbone(runner)
    assert backbone is runner.model.teacher.module.backbone


def test_knn_eval_hook_rejects_bad_arguments(labelled_dir):
    with pytest.raises(ValueError, match="'teacher' or 'student'"):
        KNNEvalHook(**{k: v for k, v in _hook_cfg(labelled_dir, key='ema').items() if k != 'type'})
    with pytest.raises(ValueError, match='val_dataset'):
        KNNEvalHook(train_dataset=dict(type='CustomDataset', data_root='x'), val_dataset='folder')
    with pytest.raises(ValueError, match='feature must be one of'):
        KNNEvalHook(**{k: v for k, v in _hook_cfg(labelled_dir, feature='pooled').items() if k != 'type'})


def test_knn_eval_hook_places_images_at_the_mean_placement_by_default(labelled_dir):
    """Beta(2, 5) -> a centred window of side 2/7: near the training statistics, not the whole canvas."""
    from mmengine.config import Config
    cfg = Config.fromfile(TINY_PRETRAIN)
    args = {k: v for k, v in _hook_cfg(labelled_dir).items() if k != 'type'}
    s = 2 / 7
    assert KNNEvalHook(**args).canvas_box(cfg) == pytest.approx(((1 - s) / 2, (1 - s) / 2, (1 + s) / 2, (1 + s) / 2))
    assert KNNEvalHook(**args, placement='whole').canvas_box(cfg) is None
    assert KNNEvalHook(**args, box=(0.1, 0.2, 0.5, 0.6)).canvas_box(cfg) == (0.1, 0.2, 0.5, 0.6)
    cfg.train_dataloader.collate_fn['placement'] = dict(mode='uniform', scale_range=(0.2, 0.6))  # an ablation's
    assert KNNEvalHook(**args).canvas_box(cfg) == pytest.approx((0.3, 0.3, 0.7, 0.7))
    with pytest.raises(ValueError, match="placement must be 'mean' or 'whole'"):
        KNNEvalHook(**args, placement='centre')
