"""Every COCO evaluator in the shipped configs is the checked one (``CheckedCocoMetric``, projects/common/coco.py):
its ground truth goes through the dataset's checks, so a polygon of fewer than 3 points is dropped at load instead
of crashing pycocotools mid-evaluation (docs/reliability.md)."""
import os.path as osp

from mmengine.config import Config

from tests.helpers import ROOT, SHIPPED_CONFIGS


def _coco_evaluator_types(cfg):
    for key in ('val_evaluator', 'test_evaluator'):
        evaluators = cfg.get(key) or []
        for ev in evaluators if isinstance(evaluators, (list, tuple)) else [evaluators]:
            name = str(ev.get('type', '')).split('.')[-1]
            if name.endswith('CocoMetric'):
                yield key, name


def test_every_coco_evaluator_is_the_checked_one():
    found, wrong = [], []
    for path in SHIPPED_CONFIGS:
        for key, name in _coco_evaluator_types(Config.fromfile(path)):
            found.append(osp.relpath(path, ROOT))
            if name != 'CheckedCocoMetric':
                wrong.append(f'{osp.relpath(path, ROOT)}: {key} type={name!r}, expected CheckedCocoMetric')
    assert not wrong, '\n'.join(wrong)
    assert 'configs/mask_rcnn/mask-rcnn_vit-b-p16-posfield_lsj-1024-12e_coco_loc-metric.py' in found
    assert any(p.startswith('configs/demo/') for p in found)  # the demo detection configs are checked too
