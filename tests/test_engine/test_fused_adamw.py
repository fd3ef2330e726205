"""The pre-training schedule's fused AdamW reaches torch through mmengine and makes the same update."""
import copy
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

import projects.posfield  # noqa: F401
from tests.helpers import ROOT, TINY_PRETRAIN

SCHEDULE = osp.join(ROOT, 'configs/_base_/schedules/posfield_adamw_100e.py')


def test_fused_adamw_from_the_schedule_equals_the_per_tensor_loop():
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    model = MODELS.build(Config.fromfile(TINY_PRETRAIN).model)
    ow = copy.deepcopy(Config.fromfile(SCHEDULE).optim_wrapper)
    ow.type = 'OptimWrapper'  # fp32 on CPU
    ow.pop('loss_scale')
    assert ow.optimizer.fused is True
    fused = build_optim_wrapper(model, ow)
    assert fused.optimizer.defaults['fused'] is True
    ow.optimizer.fused = False
    twin = copy.deepcopy(model)
    loop = build_optim_wrapper(twin, ow)
    assert not loop.optimizer.defaults['fused']
    torch.manual_seed(0)
    for _ in range(2):
        for m in (model, twin):
            for p in m.parameters():
                if p.requires_grad:
                    p.grad = None
        for p, q in zip(model.parameters(), twin.parameters()):
            if p.requires_grad:
                p.grad = torch.randn_like(p)
                q.grad = p.grad.clone()
        fused.step()
        loop.step()
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        assert torch.allclose(p, q, atol=1e-6, rtol=1e-5), name
