"""The configs/localization deltas say what their names say, and the VOC07+12 data config reads a VOCdevkit."""
import glob
import os.path as osp
import re

import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope

import projects.simclr_loc  # noqa: F401
from tests.helpers import ROOT
from tests.test_simclr_loc.voc_fixture import write_voc

LOC = sorted(glob.glob(osp.join(ROOT, 'configs/localization/*.py')))
SIMCLR = sorted(glob.glob(osp.join(ROOT, 'configs/simclr/*.py')))
FRACTIONS = [p for p in LOC if re.search(r'simclr-in1k_.*-\d+pct\.py$', p)]
DEMO = [p for p in LOC if p.endswith('_demo-voc.py')]  # tools/run_localization_job.py


@pytest.mark.parametrize('path', LOC + SIMCLR, ids=[osp.basename(p) for p in LOC + SIMCLR])
def test_every_config_is_mmpretrain_scope_with_the_project_import(path):
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'mmpretrain'
    assert cfg.custom_imports == dict(imports=['projects.simclr_loc'], allow_failed_imports=False)
    if '/localization/' in path:
        assert cfg.test_evaluator.type == 'LocalizationMetric' and cfg.model.type == 'ClsLocModel'
    else:
        assert cfg.model.type == 'SimCLR' and cfg.model.head.temperature == 0.1
        assert cfg.model.neck.out_channels == (64 if 'cpu-tiny' in path else 128)


def test_label_fraction_deltas():
    assert len(FRACTIONS) == 5
    seen = set()
    for path in FRACTIONS:
        cfg = Config.fromfile(path)
        pct, epochs = int(re.search(r'-(\d+)pct', path).group(1)), int(re.search(r'-(\d+)e_', path).group(1))
        seen.add(pct)
        assert cfg.train_dataloader.dataset.label_fraction == pct / 100
        assert cfg.train_dataloader.dataset.subset_seed == 0
        assert cfg.train_cfg.max_epochs == epochs
        assert cfg.param_scheduler[-1].end == epochs and cfg.param_scheduler[-1].T_max == epochs - 1
        assert cfg.model.init == 'simclr'
        assert 'label_fraction' not in cfg.val_dataloader.dataset  # evaluation always on the full test set
    assert seen == {1, 10, 25, 50, 100}


def test_init_variants():
    get = {name: Config.fromfile(p) for p in LOC if p not in DEMO
           for name in ('random', 'supervised', 'lite0') if name in p}
    assert get['random'].model.init == 'random'
    assert get['supervised'].model.init == 'supervised' and get['supervised'].model.init_checkpoint.endswith('.pth')
    lite = get['lite0'].model
    assert lite.init == 'imagenet-lite0' and lite.backbone == dict(type='EfficientNetLite', arch='lite0')
    assert lite.data_preprocessor.mean == [127.5] * 3 and lite.data_preprocessor.std == [127.5] * 3


def test_voc0712_data_config_reads_a_vocdevkit(tmp_path):
    from mmpretrain.registry import DATASETS
    write_voc(tmp_path / 'VOC2007', n=8, seed=0, splits=dict(trainval=range(6), test=range(6, 8)))
    write_voc(tmp_path / 'VOC2012', n=6, seed=1, splits=dict(trainval=range(6)))
    cfg = Config.fromfile(next(p for p in FRACTIONS if p.endswith('-50pct.py')))
    assert cfg.train_dataloader.dataset.label_fraction == 0.5
    cfg.train_dataloader.dataset.data_root = str(tmp_path)
    cfg.val_dataloader.dataset.data_root = str(tmp_path)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        train = DATASETS.build(cfg.train_dataloader.dataset)
        val = DATASETS.build(cfg.val_dataloader.dataset)
        sample = train[0]
    # 12 trainval images (6 + 6), 4 per class -> 2 per class at 50 %
    assert len(train) == 6 and len(val) == 2
    assert {train.get_data_info(i)['source'] for i in range(len(train))} <= {str(tmp_path / 'VOC2007'),
                                                                            str(tmp_path / 'VOC2012')}
    assert sample['inputs'].shape == (3, 224, 224)
    assert sample['data_samples'].gt_bboxes.shape == (1, 4) and sample['data_samples'].ori_gt_bboxes.shape == (1, 4)


def test_demo_voc_configs_differ_only_in_init():
    """SimCLR, random and ImageNet rows of the localisation job: one architecture, one schedule, one data set."""
    cfgs = {re.search(r'lite0_(.+?)_1x', osp.basename(p)).group(1): Config.fromfile(p) for p in DEMO}
    assert set(cfgs) == {'random-init', 'simclr-demo-pool', 'imagenet-lite0'}
    inits = {k: (c.model.pop('init'), c.model.pop('init_checkpoint', None)) for k, c in cfgs.items()}
    assert inits['random-init'] == ('random', None) and inits['imagenet-lite0'][0] == 'imagenet-lite0'
    assert inits['simclr-demo-pool'][0] == 'simclr' and inits['simclr-demo-pool'][1].endswith('.pth')
    base = cfgs['random-init']
    for cfg in cfgs.values():
        for key in ('model', 'train_dataloader', 'test_dataloader', 'optim_wrapper', 'param_scheduler', 'train_cfg'):
            assert cfg[key] == base[key], key
    assert base.model.backbone == dict(type='EfficientNetLite', arch='lite0', bn_momentum=0.1)
    assert base.model.data_preprocessor.mean == [127.5] * 3 and base.model.data_preprocessor.std == [127.5] * 3
    name = osp.basename(DEMO[0])
    assert base.train_cfg.max_iters == int(re.search(r'-(\d+)iter', name).group(1))
    assert base.train_dataloader.batch_size == int(re.search(r'1xb(\d+)', name).group(1))
    assert base.model.head.num_classes == len(base.train_dataloader.dataset.classes) == 7
    assert base.get('val_dataloader') is None  # the test split never picks a checkpoint
    assert 'label_fraction' not in base.test_dataloader.dataset
    # the SimCLR checkpoint these configs start from is made by the same backbone and input scaling
    simclr = Config.fromfile(next(p for p in SIMCLR if p.endswith('_demo-pool.py')))
    # the same network; only the running-statistics momentum of fine-tuning differs
    assert simclr.model.backbone == {k: v for k, v in base.model.backbone.items() if k != 'bn_momentum'}
    assert simclr.model.data_preprocessor.mean == base.model.data_preprocessor.mean
    assert simclr.model.data_preprocessor.std == base.model.data_preprocessor.std
    assert simclr.train_cfg.max_iters == int(re.search(r'-(\d+)iter', osp.basename(simclr.filename)).group(1))
