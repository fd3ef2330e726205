"""The mixed-precision path of the ViT-S pre-training config runs: PosFieldSSL.train_steps under bfloat16 autocast on
the CPU, with the config's ViT-S backbone, neck, losses and optimiser, at small crops and batch and with fewer
prototypes."""
import copy
import random

import numpy as np
import torch
from mmengine.optim import OptimWrapper, build_optim_wrapper
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS

from projects.benchmarks.train_step import build_batches, make_images
from projects.common.runner_setup import load_config
from tests.helpers import ROOT

CONFIG = f'{ROOT}/configs/posfield/posfield_vit-small-p16_4xb64-amp-100e_in1k.py'


class CPUBFloat16OptimWrapper(OptimWrapper):
    """What mmengine's ``AmpOptimWrapper(dtype='bfloat16')`` does around the forward (its ``optim_context``), on
    the CPU, where mmengine's own wrapper asserts a CUDA device; bfloat16 needs no loss scaling."""

    def optim_context(self, model):
        from contextlib import ExitStack
        stack = ExitStack()
        stack.enter_context(super().optim_context(model))
        stack.enter_context(torch.autocast('cpu', dtype=torch.bfloat16))
        return stack


def test_vit_small_config_trains_under_bf16_autocast_on_cpu(tmp_path):
    init_default_scope('mmpretrain')
    cfg = load_config(CONFIG)
    assert cfg.model.backbone.arch == 'ViT-S' and cfg.optim_wrapper.type == 'AmpOptimWrapper'
    # 4096 prototypes instead of 65536: the prototype layer's 16.8M parameters would be most of the step's
    # optimiser, EMA and cast work on the CPU, and its products run the same code at any width
    cfg.model.neck.num_prototypes = cfg.model.cls_head.loss.out_dim = cfg.model.head.loss.out_dim = 4096
    # 64 / 32 px crops (4 x 4 and 2 x 2 patches of 16 px), 2 local crops, 2 images a batch: the architecture,
    # heads, losses and optimiser of the config, a small fraction of its compute
    pipeline = copy.deepcopy(cfg.train_dataloader.dataset.pipeline)
    crop = next(t for t in pipeline if t['type'] == 'PosFieldMultiCrop')
    crop.update(global_crops_size=64, local_crops_size=32, local_crops_number=2)
    cfg.train_dataloader.dataset = dict(type='CustomDataset', with_label=False, pipeline=pipeline,
                                        data_root=make_images(str(tmp_path), 2, (96, 80)))
    # the config's wrapper settings (constructor, layer decay, per-module clipping) around the CPU bf16 context
    wrapper = {k: v for k, v in cfg.optim_wrapper.items() if k not in ('type', 'loss_scale', 'dtype')}
    wrapper['type'] = CPUBFloat16OptimWrapper
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    batches = build_batches(cfg, 2, 2)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.set_train_length(max_iters=1000, iters_per_epoch=100)
    model.train()
    optim_wrapper = build_optim_wrapper(model, wrapper)
    assert isinstance(optim_wrapper, CPUBFloat16OptimWrapper)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if not n.startswith('teacher.')}
    seen_dtypes = set()
    # on the patch embedding, not in a block: a hook inside a block would make it run its plain forward
    handle = model.backbone.patch_embed.register_forward_hook(lambda m, i, out: seen_dtypes.add(out[0].dtype))
    for batch in batches:
        logs = model.train_step(batch, optim_wrapper)
        assert logs and all(torch.isfinite(torch.as_tensor(v)).all() for v in logs.values()), logs
        assert logs['loss'] > 0  # train_step returns the logged values as floats (one read per step)
    handle.remove()
    assert seen_dtypes == {torch.bfloat16}  # the products ran in bfloat16
    after = dict(model.named_parameters())
    assert all(torch.isfinite(p).all() for p in after.values())
    changed = {n for n, p in before.items() if not torch.equal(p, after[n].detach())}
    blocks_and_neck = {n for n in before if n.startswith(('backbone.layers.', 'neck.mlp.'))}
    assert len(blocks_and_neck) > 100 and blocks_and_neck <= changed, sorted(blocks_and_neck - changed)
    # the prototypes stay frozen in the first epoch, as DINO freezes them
    assert not any('.prototypes.' in n for n in changed)
