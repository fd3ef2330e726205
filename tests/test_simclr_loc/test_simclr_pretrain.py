"""mmpretrain's SimCLR with EfficientNet, from this repository's configs."""
import copy
import glob
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import default_collate
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmengine.runner import set_random_seed

import projects.simclr_loc  # noqa: F401
from tests.helpers import ROOT, write_images

TINY = osp.join(ROOT, 'configs/simclr/simclr_efficientnet-b0_1xb8-10iter_cpu-tiny.py')
FULL = sorted(p for p in glob.glob(osp.join(ROOT, 'configs/simclr/*.py')) if 'cpu-tiny' not in p)


def build_model(model_cfg):
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(copy.deepcopy(model_cfg))


def test_tiny_config_loss_decreases_on_a_fixed_batch(tmp_path):
    """Real pipeline views of 8 images, built once; 6 AdamW steps of the config's optimiser on that batch."""
    from mmpretrain.registry import DATASETS
    cfg = Config.fromfile(TINY)
    cfg.train_dataloader.dataset.data_root = write_images(tmp_path / 'imgs', n=8)
    set_random_seed(0)  # python random (mmcv's RandomGrayscale), numpy and torch
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        dataset = DATASETS.build(cfg.train_dataloader.dataset)
        batch = default_collate([dataset[i] for i in range(8)])  # the config's collate_fn
    assert len(batch['inputs']) == 2 and batch['inputs'][0].shape == (8, 3, 64, 64)  # two 64-px views
    model = build_model(cfg.model)
    model.init_weights()
    model.train()
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    losses = []
    for _ in range(6):
        data = model.data_preprocessor(copy.deepcopy(batch), True)
        loss = model(**data, mode='loss')['loss']
        optim.update_params(loss)
        losses.append(loss.item())
    assert all(np.isfinite(losses)), losses
    assert losses[0] > 1.0, losses  # a random network does not already match the views
    assert losses[-1] < 0.5 * losses[0], losses
    assert min(losses[3:]) < min(losses[:3]), losses


@pytest.mark.parametrize('path', FULL, ids=[osp.basename(p) for p in FULL])
def test_neck_takes_what_the_backbone_gives(path):
    cfg = Config.fromfile(path)
    model = revert_sync_batchnorm(build_model(cfg.model)).eval()
    with torch.no_grad():
        feats = model.backbone(torch.zeros(2, 3, 32, 32))
        z = model.neck(feats)[0]
    assert len(feats) == 1, 'NonLinearNeck takes exactly one feature map'
    assert feats[0].shape[1] == cfg.model.neck.in_channels
    assert z.shape == (2, 128)
    assert cfg.model.head.temperature == 0.1


def test_lars_groups_exclude_norms_and_biases_and_step():
    cfg = Config.fromfile(osp.join(ROOT, 'configs/simclr/simclr_efficientnet-b0_8xb64-lars-coslr-200e_in1k.py'))
    assert cfg.optim_wrapper.optimizer.type == 'LARS'
    model = revert_sync_batchnorm(build_model(cfg.model))  # what mmengine's Runner does without distribution
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        optim = build_optim_wrapper(model, cfg.optim_wrapper)
    names = {id(p): n for n, p in model.named_parameters()}
    for group in optim.optimizer.param_groups:
        for p in group['params']:
            name = names[id(p)]
            is_norm_or_bias = '.bn' in name or 'bn0' in name or 'bn1' in name or name.endswith('bias')
            assert bool(group.get('lars_exclude', False)) == is_norm_or_bias, name
            assert (group['weight_decay'] == 0) == is_norm_or_bias, name
    x = [torch.rand(2, 3, 32, 32) * 255 for _ in range(2)]
    data = model.data_preprocessor(dict(inputs=x, data_samples=None), True)
    before = model.backbone.layers[0].conv.weight.clone()
    optim.update_params(model(**data, mode='loss')['loss'])
    assert not torch.equal(before, model.backbone.layers[0].conv.weight)


def test_unlabeled_folder_config_reads_any_folder(tmp_path):
    from mmpretrain.registry import DATASETS
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs/simclr/simclr_efficientnet-b1_8xb64-lars-coslr-200e_unlabeled-folder.py'))
    (tmp_path / 'a' / 'b').mkdir(parents=True)
    write_images(tmp_path / 'a', n=2)
    write_images(tmp_path / 'a' / 'b', n=3, seed=1)
    cfg.train_dataloader.dataset.data_root = str(tmp_path)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        dataset = DATASETS.build(cfg.train_dataloader.dataset)
        assert len(dataset) == 5  # recursive, no annotation file
        views = dataset[0]['inputs']
    assert len(views) == 2 and views[0].shape == (3, 224, 224)
