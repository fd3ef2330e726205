"""The DINOv2-dagger configs hold DINOv2's recipe (facebookresearch/dinov2, commit b8931f7) as resolved values.

Each check builds what the config builds (model, optimiser wrapper, pipeline transform, masks) and compares it with
the rule DINOv2's code applies, so a change of a default anywhere below a config fails here. Where the method
spec differs from DINOv2 on purpose, docs/posfield.md lists it; those settings are not checked here.
"""
import math
import os
import os.path as osp
import re

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.registry import DefaultScope, init_default_scope

from tests.helpers import ROOT

DAGGER = sorted(osp.join(ROOT, 'configs', d, f) for d in ('posfield', 'demo')
                for f in os.listdir(osp.join(ROOT, 'configs', d))
                if f.startswith('dinov2-dagger_') and f.endswith('.py'))
FULL_SIZE = [p for p in DAGGER if '_in1k' in p]  # the paper's runs: ViT-S/16 and ViT-B/16, ImageNet-1K
IDS = [osp.relpath(p, ROOT) for p in DAGGER]


def _cfg(path):
    return Config.fromfile(path)


def _build(cfg, num_prototypes=1024):
    """The config's model (fewer prototypes: what is checked does not depend on their number)."""
    from mmpretrain.registry import MODELS
    model_cfg = cfg.model
    model_cfg.neck.num_prototypes = num_prototypes
    for key in ('cls_head', 'head'):
        model_cfg[key].loss.out_dim = num_prototypes
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        init_default_scope('mmpretrain')
        torch.manual_seed(0)
        model = MODELS.build(model_cfg)
        model.init_weights()
    return model


def _wrapper(cfg, model):
    from mmpretrain.registry import OPTIM_WRAPPER_CONSTRUCTORS
    ow = cfg.optim_wrapper.copy()
    ow.type = 'OptimWrapper'  # the recipe, not the loss scaling
    ow.pop('loss_scale', None)
    ow.optimizer = dict(ow.optimizer, fused=False)
    constructor = dict(type=ow.pop('constructor'), paramwise_cfg=ow.pop('paramwise_cfg'), optim_wrapper_cfg=ow)
    return OPTIM_WRAPPER_CONSTRUCTORS.build(constructor)(model)


def test_the_dagger_configs_are_found():
    assert len(FULL_SIZE) == 2 and len(DAGGER) >= 3, IDS


@pytest.mark.parametrize('path', DAGGER, ids=IDS)
def test_baseline_switches_and_dinov2_settings(path):
    cfg = _cfg(path)
    bb, pre = cfg.model.backbone, cfg.train_dataloader.collate_fn
    assert bb.pos_embed_type == 'interpolate' and bb.get('pos_field') is None
    assert pre.masking.content_ratio == 1.0  # content masking only
    assert cfg.model.neck.norm_last_layer is False  # DINOv2's DINOHead: weight_g trained
    assert cfg.optim_wrapper.clip_grad == dict(max_norm=3.0, per_module=True)
    paramwise = cfg.optim_wrapper.paramwise_cfg
    assert 'custom_keys' not in paramwise and paramwise.flat_decay_mult == 0.0 and paramwise.norm_decay_mult == 0.0


@pytest.mark.parametrize('path', FULL_SIZE, ids=[osp.relpath(p, ROOT) for p in FULL_SIZE])
def test_full_size_schedule_is_dinov2s(path):
    """ViT-S/B 100-epoch recipe: lr 0.004 * sqrt(batch / 1024), AdamW, wd 0.04 -> 0.4, warm-up 10 epochs, layer
    decay 0.9, patch-embed lr x 0.2, teacher momentum 0.992 -> 1, teacher temperature 0.04 -> 0.07 over 30
    epochs, drop-path 0.1 in every block with DINOv2's kept count, layer scale 1e-5, KoLeo 0.1."""
    cfg = _cfg(path)
    gpus, per_gpu = map(int, re.search(r'_(\d+)xb(\d+)-', osp.basename(path)).groups())
    assert cfg.train_dataloader.batch_size == per_gpu
    opt = cfg.optim_wrapper.optimizer
    assert opt.type == 'AdamW' and opt.lr == pytest.approx(0.004 * math.sqrt(gpus * per_gpu / 1024))
    assert opt.weight_decay == 0.04 and tuple(opt.betas) == (0.9, 0.999)
    sched = {s['type']: s for s in cfg.param_scheduler}
    assert sched['LinearLR']['end'] == 10 and sched['CosineAnnealingLR']['eta_min'] == 1e-6
    assert sched['CosineAnnealingWeightDecay']['eta_min'] == 0.4
    assert cfg.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.9
    assert cfg.optim_wrapper.paramwise_cfg.patch_embed_lr_mult == 0.2
    m = cfg.model
    assert tuple(m.momentum) == (0.992, 1.0) and tuple(m.teacher_temp) == (0.04, 0.07)
    assert m.teacher_temp_warmup_epochs == 30 and m.koleo_weight == 0.1
    assert m.freeze_prototypes_epochs == 1  # freeze_last_layer_epochs
    assert m.backbone.drop_path_rate == 0.1 and m.backbone.drop_path_uniform and m.backbone.drop_path_mode == 'dinov2'
    assert m.backbone.layer_scale_init_value == 1e-5
    assert (m.neck.hidden_channels, m.neck.bottleneck_channels, m.neck.num_prototypes) == (2048, 256, 65536)
    crop = next(t for t in cfg.train_dataloader.dataset.pipeline if t['type'] == 'PosFieldMultiCrop')
    assert (crop['global_crops_size'], tuple(crop['global_crops_scale'])) == (224, (0.32, 1.0))
    assert (crop['local_crops_number'], crop['local_crops_size'], tuple(crop['local_crops_scale'])) == \
        (8, 96, (0.05, 0.32))


def _dinov2_lr_multiplier(name, num_layers, patch_embed_lr_mult=0.2, rate=0.9):
    """dinov2/utils/param_groups.py (get_vit_lr_decay_rate + patch_embed_lr_mult) on this repository's names."""
    layer_id = num_layers + 1
    if name.startswith('backbone.'):
        if any(k in name for k in ('.pos_embed', '.patch_embed', '.mask_token', '.cls_token')):
            layer_id = 0
        elif '.layers.' in name:
            layer_id = int(name.split('.layers.')[1].split('.')[0]) + 1
    mult = rate ** (num_layers + 1 - layer_id)
    return mult * patch_embed_lr_mult if 'patch_embed' in name else mult


@pytest.fixture(scope='module')
def vit_s():
    cfg = _cfg(next(p for p in FULL_SIZE if 'vit-small' in p))
    model = _build(cfg)
    return cfg, model, _wrapper(cfg, model)


def test_init_statistics_are_dinov2s(vit_s):
    """DinoVisionTransformer.init_weights and DINOHead._init_weights: Linear weights trunc-normal std 0.02 with
    zero biases, [CLS] N(0, 1e-6), mask token zero, pos_embed std 0.02, PyTorch's Conv2d default for the patch
    embedding, layer scale 1e-5, prototype magnitude 1 (trained)."""
    _, model, _ = vit_s
    for part in (model.backbone, model.neck.mlp):
        for m in part.modules():
            if isinstance(m, nn.Linear):
                assert m.weight.std().item() == pytest.approx(0.02, rel=0.05)
                assert m.bias is None or not m.bias.any()
    bb = model.backbone
    assert 0 < bb.cls_token.std().item() < 1e-5 and not bb.mask_token.any()
    assert bb.pos_embed.std().item() == pytest.approx(0.02, rel=0.05) and tuple(bb.patch_resolution) == (14, 14)
    conv = bb.patch_embed.projection
    fan_in = conv.weight[0].numel()
    assert conv.weight.std().item() == pytest.approx(1 / math.sqrt(3 * fan_in), rel=0.05)  # kaiming_uniform(a=√5)
    scales = [p for n, p in bb.named_parameters() if 'gamma' in n]
    assert len(scales) == 2 * len(bb.layers) and all(torch.all(p == 1e-5) for p in scales)
    g = model.neck.prototypes.parametrizations.weight.original0
    assert g.requires_grad and torch.equal(g, torch.ones_like(g))
    teacher_g = model.teacher.module['neck'].prototypes.parametrizations.weight.original0
    assert torch.equal(teacher_g, g)


def test_decay_and_lr_groups_are_dinov2s(vit_s):
    """Weight decay on every parameter but biases, norms and layer scales; lr multipliers by DINOv2's rule."""
    cfg, model, wrapper = vit_s
    exempt = {id(m.bias) for m in model.modules() if isinstance(m, nn.Linear) and m.bias is not None}
    exempt |= {id(p) for m in model.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters()}
    exempt |= {id(p) for n, p in model.named_parameters() if 'gamma' in n}
    exempt |= {id(model.backbone.patch_embed.projection.bias)}
    base_wd = cfg.optim_wrapper.optimizer.weight_decay
    groups = {g['param_name']: g for g in wrapper.optimizer.param_groups}
    student = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert sorted(groups) == sorted(n for n, _ in student)  # every student parameter, no teacher
    num_layers = len(model.backbone.layers)
    for name, p in student:
        assert groups[name]['weight_decay'] == (0.0 if id(p) in exempt else pytest.approx(base_wd)), name
        assert groups[name]['lr_scale'] == pytest.approx(_dinov2_lr_multiplier(name, num_layers)), name
    assert groups['backbone.cls_token']['weight_decay'] == pytest.approx(base_wd)


def test_clipping_groups_and_frozen_prototypes_are_dinov2s(vit_s):
    """Gradients clipped to 3.0 per student module (backbone, neck); the prototypes' lr 0 while frozen."""
    _, model, wrapper = vit_s
    parts = {'backbone': model.backbone, 'neck': model.neck}
    for part, norm in zip(parts.values(), (10.0, 1.0)):
        params = [p for p in part.parameters() if p.requires_grad]
        for p in params:
            p.grad = torch.full_like(p, norm / math.sqrt(sum(q.numel() for q in params)))
    lrs = [g['lr'] for g in wrapper.optimizer.param_groups]
    for g in wrapper.optimizer.param_groups:
        g['lr'] = 0.0  # clip only
    wrapper.step()
    for g, lr in zip(wrapper.optimizer.param_groups, lrs):
        g['lr'] = lr
    norms = {k: torch.stack([p.grad.norm() for p in v.parameters() if p.grad is not None]).norm().item()
             for k, v in parts.items()}
    assert norms['backbone'] == pytest.approx(3.0, rel=1e-4) and norms['neck'] == pytest.approx(1.0, rel=1e-4)
    wrapper.zero_grad()
    frozen, shared = model._prototype_groups(wrapper)  # groups of their own: lr 0 while frozen
    protos = {id(p) for p in model.neck.prototypes.parameters()}
    assert {id(p) for g in frozen for p in g['params']} == protos and len(protos) == 2 and not shared


@pytest.mark.parametrize('path', DAGGER, ids=IDS)
def test_mask_statistics_are_dinov2s(path):
    """collate_data_and_cast + MaskingGenerator on 14 x 14: half the global views masked, ratios spread over
    [0.1, 0.5], blocks (>= 4 patches, aspect 0.3-3.3, strictly smaller than the grid); under 0.5 % of the masked
    patches isolated (DINOv2's own generator: 0.25 %)."""
    from projects.posfield.batch.collate import DEFAULT_MASKING
    from projects.posfield.batch.masking import batch_masks
    masking = {**DEFAULT_MASKING, **_cfg(path).train_dataloader.collate_fn.masking}
    assert masking['mask_prob'] == 0.5 and tuple(masking['ratio_range']) == (0.1, 0.5)
    assert masking['content_mode'] == 'block' and masking['min_num_patches'] == 4
    assert tuple(masking['aspect_range']) == pytest.approx((0.3, 1 / 0.3))
    rng = np.random.default_rng(0)
    masked = isolated = views = masked_views = 0
    for _ in range(50):  # 50 batches x 32 images x 2 global views
        content, position = batch_masks(rng, 32, 2, (14, 14), **masking)
        assert not position.any()
        for mask in content:
            views += 1
            if mask.any():
                masked_views += 1
                padded = np.pad(mask, 1)
                near = padded[:-2, 1:-1] | padded[2:, 1:-1] | padded[1:-1, :-2] | padded[1:-1, 2:]
                isolated += int((mask & ~near).sum())
                masked += int(mask.sum())
    assert masked_views == views // 2
    assert masked / masked_views / 196 == pytest.approx(0.3, abs=0.01)
    assert isolated / masked < 0.005


def test_crop_interpolation_is_dinov2s():
    """Views: torchvision's RandomResizedCrop(BICUBIC) on PIL images; the baseline's positions: bicubic with
    interpolate_offset 0.1 from the 14 x 14 grid (DinoVisionTransformer.interpolate_pos_encoding)."""
    import torchvision.transforms.functional as TF
    from PIL import Image

    from projects.posfield.datasets.transforms import PosFieldMultiCrop
    cfg = _cfg(next(p for p in FULL_SIZE if 'vit-small' in p))
    crop_cfg = dict(next(t for t in cfg.train_dataloader.dataset.pipeline if t['type'] == 'PosFieldMultiCrop'))
    crop_cfg.pop('type')
    img = (np.random.default_rng(0).random((150, 200, 3)) * 255).astype(np.uint8)
    out = PosFieldMultiCrop(**crop_cfg, global_transforms=[], local_transforms=[], seed=0)(dict(img=img))
    for view, box, flip in zip(out['img'], out['crop_boxes'], out['view_flips']):
        x0, y0, x1, y1 = (int(round(v)) for v in (box[0] * 200, box[1] * 150, box[2] * 200, box[3] * 150))
        ref = np.asarray(TF.resized_crop(Image.fromarray(img), y0, x0, y1 - y0, x1 - x0, [view.shape[0]] * 2,
                                         interpolation=TF.InterpolationMode.BICUBIC))
        ref = ref[:, ::-1] if flip else ref
        assert np.abs(view.astype(int) - ref.astype(int)).max() <= 2

    from projects.posfield.models.backbones import PosFieldViT
    bb = dict(cfg.model.backbone, pos_embed_type='interpolate', pos_field=None)
    bb.pop('type')
    vit = PosFieldViT(**dict(bb, arch='ViT-micro'))
    vit.init_weights()
    grid = vit.pos_embed[:, 1:].detach().reshape(1, 14, 14, -1).permute(0, 3, 1, 2)
    want = torch.nn.functional.interpolate(grid, scale_factor=(6.1 / 14, 6.1 / 14), mode='bicubic',
                                           antialias=False).flatten(2).transpose(1, 2)
    assert torch.allclose(vit._positions(1, (6, 6), None, None)[1], want, atol=1e-6)
