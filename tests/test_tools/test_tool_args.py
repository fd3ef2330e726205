"""Argument handling of tools/train.py and tools/test.py and their application to a config
(projects/common/runs.py; no training here)."""
import os
import os.path as osp

import pytest
from mmengine.config import Config

from projects.common.runs import enable_visualization, merge_train_args
from tests.helpers import load_tool

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


train_tool = load_tool('tools/train.py')
test_tool = load_tool('tools/test.py')


def _cfg(**extra):
    return Config(dict(optim_wrapper=dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1)), **extra))


@pytest.mark.parametrize('flag', ['--local_rank', '--local-rank'])
def test_both_local_rank_spellings(flag, monkeypatch):
    monkeypatch.delenv('LOCAL_RANK', raising=False)
    args = train_tool.parse_args(['cfg.py', flag, '3'])
    assert args.local_rank == 3
    assert os.environ['LOCAL_RANK'] == '3'
    args = test_tool.parse_args(['cfg.py', 'ckpt.pth', flag, '2'])
    assert args.local_rank == 2


def test_resume_flag_forms(tmp_path):
    assert train_tool.parse_args(['c.py']).resume is None
    assert train_tool.parse_args(['c.py', '--resume']).resume == 'auto'
    ckpt = tmp_path / 'iter_4.pth'
    ckpt.write_bytes(b'x')
    args = train_tool.parse_args(['c.py', '--resume', str(ckpt)])
    cfg = merge_train_args(_cfg(), args)
    assert cfg.resume is True and cfg.load_from == str(ckpt)
    cfg = merge_train_args(_cfg(load_from='x.pth'), train_tool.parse_args(['c.py', '--resume', 'auto']))
    assert cfg.resume is True and cfg.load_from is None
    with pytest.raises(FileNotFoundError, match='no_such.pth'):
        merge_train_args(_cfg(), train_tool.parse_args(['c.py', '--resume', str(tmp_path / 'no_such.pth')]))


def test_work_dir_priority_and_amp():
    args = train_tool.parse_args(['configs/x/my_cfg.py', '--amp', '--amp-dtype', 'bfloat16'])
    cfg = merge_train_args(_cfg(), args)
    assert cfg.work_dir == osp.join('./work_dirs', 'my_cfg')
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == 'dynamic' and cfg.optim_wrapper.dtype == 'bfloat16'
    cfg = merge_train_args(_cfg(work_dir='from_cfg'), train_tool.parse_args(['c.py']))
    assert cfg.work_dir == 'from_cfg'
    cfg = merge_train_args(_cfg(work_dir='from_cfg'), train_tool.parse_args(['c.py', '--work-dir', 'cli']))
    assert cfg.work_dir == 'cli'


def test_cfg_options_and_auto_scale_lr():
    args = train_tool.parse_args(['c.py', '--cfg-options', 'train_dataloader.batch_size=8', 'a.b=[1,2]',
                                  '--auto-scale-lr'])
    assert args.cfg_options == {'train_dataloader.batch_size': 8, 'a.b': [1, 2]}
    with pytest.raises(KeyError, match='auto_scale_lr.base_batch_size'):
        merge_train_args(_cfg(), args)
    cfg = merge_train_args(_cfg(auto_scale_lr=dict(base_batch_size=64)), args)
    assert cfg.auto_scale_lr.enable is True


def test_missing_config_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.py'):
        train_tool.main([str(tmp_path / 'nope.py')])


def test_test_tool_checks_checkpoint_and_show_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        test_tool.main(['c.py', str(tmp_path / 'missing.pth')])
    det = Config(dict(default_hooks=dict(visualization=dict(type='DetVisualizationHook'))))
    enable_visualization(det, 'vis', 2, 0.5)
    assert det.default_hooks.visualization.draw is True
    assert det.default_hooks.visualization.test_out_dir == 'vis'
    cls = Config(dict(default_hooks=dict(visualization=dict(type='VisualizationHook', enable=False))))
    enable_visualization(cls, 'vis', 1, 0.3)
    assert cls.default_hooks.visualization.enable is True and cls.default_hooks.visualization.out_dir == 'vis'
    with pytest.raises(KeyError, match='visualization'):
        enable_visualization(Config(dict(default_hooks=dict())), 'vis', 1, 0.3)
