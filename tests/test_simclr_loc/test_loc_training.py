"""The tiny localisation config end to end: SimCLR-initialised training through mmengine's Runner, evaluation
with LocalizationMetric, then tools/test.py on the saved checkpoint."""
import glob
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

import projects.simclr_loc  # noqa: F401
from tests.helpers import ROOT, load_tool
from tests.test_simclr_loc.voc_fixture import write_voc

TINY_LOC = osp.join(ROOT, 'configs/localization/clsloc_efficientnet-b0_1xb4-6iter_cpu-tiny.py')
TINY_SIMCLR = osp.join(ROOT, 'configs/simclr/simclr_efficientnet-b0_1xb8-10iter_cpu-tiny.py')
METRIC_KEYS = {'loc/top1', 'loc/top3', 'loc/mean_iou', 'loc/acc_iou50', 'loc/acc_iou70', 'loc/num_objects'}


def data_options(root):
    return {f'{k}.dataset.data_root': str(root) for k in ('train_dataloader', 'val_dataloader', 'test_dataloader')}


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    from mmengine.runner import Runner
    from mmpretrain.registry import MODELS
    tmp = tmp_path_factory.mktemp('loc')
    write_voc(tmp / 'voc', n=12)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        simclr = MODELS.build(Config.fromfile(TINY_SIMCLR).model)
    torch.save(dict(state_dict=simclr.state_dict(), meta=dict()), tmp / 'simclr.pth')

    cfg = Config.fromfile(TINY_LOC)
    cfg.merge_from_dict(data_options(tmp / 'voc'))
    cfg.model.update(init='simclr', init_checkpoint=str(tmp / 'simclr.pth'))
    cfg.work_dir = str(tmp / 'work')
    runner = Runner.from_cfg(cfg)
    runner.train()
    val_metrics = runner.val_loop.evaluator.metrics[0]
    return dict(tmp=tmp, runner=runner, simclr=simclr, metric=val_metrics)


def test_runner_trains_from_the_simclr_backbone(trained):
    runner, tmp = trained['runner'], trained['tmp']
    assert osp.isfile(tmp / 'work' / 'iter_6.pth')
    log = open(glob.glob(str(tmp / 'work' / '*' / '*.log'))[0]).read()
    total = len(runner.model.backbone.state_dict())
    assert f'loaded {total}/{total} tensors' in log and 'simclr.pth' in log
    assert 'VOCLocalizationDataset: 8/8 images' in log
    for key in ('loss_cls', 'loss_l1', 'loss_giou', 'train_iou'):
        assert key in log
    # training moved the weights away from the SimCLR initialisation
    start = trained['simclr'].backbone.state_dict()['layers.0.conv.weight']
    assert not torch.equal(runner.model.backbone.state_dict()['layers.0.conv.weight'], start)


def test_runner_test_reports_localisation_metrics(trained):
    metrics = trained['runner'].test()
    assert set(metrics) == METRIC_KEYS
    assert metrics['loc/num_objects'] == 4  # the 4 val images, one target each
    for key in METRIC_KEYS - {'loc/num_objects'}:
        assert 0.0 <= metrics[key] <= 100.0
    # 25 % steps: 4 objects
    assert all(abs(metrics[k] * 4 / 100 - round(metrics[k] * 4 / 100)) < 1e-9
               for k in ('loc/top1', 'loc/top3', 'loc/acc_iou50', 'loc/acc_iou70'))


def test_tools_test_writes_the_metrics(trained, tmp_path):
    tool = load_tool('tools/test.py')
    out = tmp_path / 'metrics.json'
    opts = data_options(trained['tmp'] / 'voc')
    argv = [TINY_LOC, str(trained['tmp'] / 'work' / 'iter_6.pth'), '--work-dir', str(tmp_path / 'w'),
            '--out', str(out), '--cfg-options'] + [f'{k}={v}' for k, v in opts.items()]
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        tool.main(argv)
    record = json.loads(out.read_text())
    assert set(record['metrics']) == METRIC_KEYS and record['metrics']['loc/num_objects'] == 4
