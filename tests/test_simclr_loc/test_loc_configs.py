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


@pytest.mark.parametrize('path', LOC + SIMCLR, ids=[osp.basename(p) for p in LOC + SIMCLR])
def test_every_config_is_mmpretrain_scope_with_the_project_import(path):
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'mmpretrain'
    assert cfg.custom_imports == dict(imports=['projects.simclr_loc'], allow_failed_imports=False)
    if '/localization/' in path:
        assert cfg.val_evaluator.type == 'LocalizationMetric' and cfg.model.type == 'ClsLocModel'
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
    get = {name: Config.fromfile(p) for p in LOC for name in ('random', 'supervised', 'lite0') if name in p}
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
