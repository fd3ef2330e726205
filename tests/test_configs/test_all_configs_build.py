"""Every config in configs/ loads (custom_imports resolve) and its model builds through the registries."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope, init_default_scope

from tests.helpers import ROOT, SHIPPED_CONFIGS

CONFIGS = SHIPPED_CONFIGS


def _registry(scope):
    if scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmpretrain.registry import MODELS
    return MODELS


@pytest.mark.parametrize('path', CONFIGS, ids=[osp.relpath(p, ROOT) for p in CONFIGS])
def test_config_builds(path):
    cfg = Config.fromfile(path)
    scope = cfg.get('default_scope', 'mmpretrain')
    assert 'custom_imports' in cfg, f'{path}: configs must declare custom_imports'
    with DefaultScope.overwrite_default_scope(scope):
        init_default_scope(scope)
        model_cfg = cfg.model
        # 65536 prototypes x ViT-B are slow to initialise on CPU but build the same modules
        for key in ('neck', 'cls_head', 'head'):
            if key in model_cfg and 'num_prototypes' in model_cfg[key]:
                model_cfg[key]['num_prototypes'] = 64
            if key in model_cfg and 'loss' in model_cfg[key] and 'out_dim' in model_cfg[key]['loss']:
                model_cfg[key]['loss']['out_dim'] = 64
        model = _registry(scope).build(model_cfg)
    assert isinstance(model, torch.nn.Module)
    assert sum(p.numel() for p in model.parameters()) > 0
    for key in ('train_dataloader', 'optim_wrapper', 'train_cfg'):
        assert key in cfg, f'{path}: missing {key}'
