"""tools/analysis/gradcam.py on tiny classify-and-localise checkpoints: files written, heat maps not constant."""
import copy
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

import projects.simclr_loc  # noqa: F401
from projects.simclr_loc.datasets import VOC_CLASSES
from tests.helpers import ROOT, load_tool
from tests.test_simclr_loc.voc_fixture import write_voc

TINY_LOC = osp.join(ROOT, 'configs/localization/clsloc_efficientnet-b0_1xb4-6iter_cpu-tiny.py')


def gradcam_tool():
    return load_tool('tools/analysis/gradcam.py')


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    """Two tiny models, each fitted for 10 steps on the same 8 images (an untrained head gives gradients so
    small that Grad-CAM's maps are numerically zero)."""
    from mmengine.dataset import pseudo_collate
    from mmengine.optim import build_optim_wrapper
    from mmengine.runner import set_random_seed
    from mmpretrain.registry import DATASETS, MODELS
    tmp = tmp_path_factory.mktemp('cam')
    records = write_voc(tmp / 'voc', n=8, splits=dict(trainval=range(8)))
    cfg = Config.fromfile(TINY_LOC)
    cfg.val_dataloader.dataset.update(data_root=str(tmp / 'voc'), split='trainval')
    paths = []
    for seed in (0, 1):
        set_random_seed(seed)
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            model = MODELS.build(cfg.model)
            dataset = DATASETS.build(cfg.val_dataloader.dataset)
        model.init_weights()
        batch = pseudo_collate([dataset[i] for i in range(len(dataset))])
        optim = build_optim_wrapper(model, cfg.optim_wrapper)
        for _ in range(10):
            losses = model(**model.data_preprocessor(copy.deepcopy(batch), True), mode='loss')
            optim.update_params(sum(v for k, v in losses.items() if 'loss' in k))
        path = tmp / f'model{seed}.pth'
        torch.save(dict(state_dict=model.state_dict(), meta=dict(dataset_meta=dict(classes=VOC_CLASSES))), path)
        paths.append(str(path))
    images = [str(tmp / 'voc' / 'JPEGImages' / f'{r["img_id"]}.jpg') for r in records[:2]]
    return tmp, paths, images


def test_two_checkpoints_side_by_side(checkpoints):
    tmp, (ckpt_a, ckpt_b), images = checkpoints
    out = tmp / 'out'
    results = gradcam_tool().main([TINY_LOC, ckpt_a, '--config2', TINY_LOC, '--checkpoint2', ckpt_b, '--img', *images,
                                '--out-dir', str(out), '--target-class', 'cat', '--save-raw',
                                '--display-size', '96', '--names', 'A', 'B', '--device', 'cpu'])
    assert len(results) == 2
    for record, img in zip(results, images):
        stem = osp.splitext(osp.basename(img))[0]
        assert record['out'] == str(out / f'{stem}_gradcam.png')
        canvas = cv2.imread(record['out'])
        assert canvas.shape == (96 + 22, 3 * 96, 3)  # caption bar + input | model A | model B
        for i, heat in enumerate(record['cams']):
            assert heat.shape == (64, 64)  # the tiny config's input size
            assert heat.max() == pytest.approx(1.0, abs=1e-3) and heat.min() == 0.0, 'heat map is constant'
            assert heat.std() > 0.05
            np.testing.assert_allclose(np.load(out / f'{stem}_gradcam_model{i + 1}.npy'), heat)
            assert record['labels'][i]['target'] == VOC_CLASSES.index('cat')
        assert not np.allclose(record['cams'][0], record['cams'][1])  # two different models
        # each overlay panel differs from the plain input panel where the heat map is
        panels = [canvas[22:, k * 96:(k + 1) * 96].astype(int) for k in range(3)]
        assert np.abs(panels[1] - panels[0]).mean() > 5 and np.abs(panels[2] - panels[0]).mean() > 5


def test_bad_arguments_are_explained(checkpoints, capsys):
    tmp, (ckpt_a, _), images = checkpoints
    tool = gradcam_tool()
    with pytest.raises(SystemExit):
        tool.parse_args([TINY_LOC, ckpt_a, '--config2', TINY_LOC, '--img', images[0], '--out-dir', str(tmp)])
    assert '--config2 and --checkpoint2 go together' in capsys.readouterr().err
    with pytest.raises(ValueError, match="--target-class 'unicorn' is not a class name"):
        tool.main([TINY_LOC, ckpt_a, '--img', images[0], '--out-dir', str(tmp / 'x'), '--target-class', 'unicorn'])
    with pytest.raises(ValueError, match="--target-layer 'backbone.nolayer'.*has no 'nolayer'"):
        tool.main([TINY_LOC, ckpt_a, '--img', images[0], '--out-dir', str(tmp / 'x'), '--target-layer',
                   'backbone.nolayer'])
    with pytest.raises(FileNotFoundError, match='checkpoint file not found'):
        tool.main([TINY_LOC, str(tmp / 'none.pth'), '--img', images[0], '--out-dir', str(tmp / 'x')])
    lite0_cfg = osp.join(ROOT, 'configs/localization/'
                         'clsloc_efficientnet-lite0_imagenet-lite0_1xb32-50e_voc0712-100pct.py')
    with pytest.raises(RuntimeError, match='unexpected key'):  # a checkpoint of another backbone never half-loads
        tool.main([lite0_cfg, ckpt_a, '--img', images[0], '--out-dir', str(tmp / 'x')])
    simclr_cfg = osp.join(ROOT, 'configs/simclr/simclr_efficientnet-b0_1xb8-10iter_cpu-tiny.py')
    with pytest.raises(ValueError, match='needs a classifier with a head'):
        tool.main([simclr_cfg, ckpt_a, '--img', images[0], '--out-dir', str(tmp / 'x')])


def test_three_models_with_compare_and_cfg_options(checkpoints):
    tmp, (ckpt_a, ckpt_b), images = checkpoints
    tool = gradcam_tool()
    results = tool.main([TINY_LOC, ckpt_a, '--compare', TINY_LOC, ckpt_b, '--compare', TINY_LOC, ckpt_a,
                         '--img', images[0], '--out-dir', str(tmp / 'out3'), '--display-size', '96', '--device', 'cpu',
                         '--names', 'A', 'B', 'C', '--cfg-options', 'model.head.box_hidden_channels=32'])
    canvas = cv2.imread(results[0]['out'])
    assert canvas.shape == (96 + 22, 4 * 96, 3)  # input | A | B | C
    cams = results[0]['cams']
    np.testing.assert_allclose(cams[0], cams[2])  # the same checkpoint twice gives the same map
    assert not np.allclose(cams[0], cams[1])
    # the options reach every model: a head of another width no longer fits the checkpoints
    with pytest.raises(RuntimeError, match='size mismatch'):
        tool.main([TINY_LOC, ckpt_a, '--img', images[0], '--out-dir', str(tmp / 'x'), '--device', 'cpu',
                   '--cfg-options', 'model.head.box_hidden_channels=16'])
    with pytest.raises(SystemExit):
        tool.parse_args([TINY_LOC, ckpt_a, '--compare', TINY_LOC, ckpt_b, '--names', 'A', '--img', images[0],
                         '--out-dir', str(tmp)])
