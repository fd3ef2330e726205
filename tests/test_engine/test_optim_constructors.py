"""Layer-wise lr decay, patch-embed lr multiplier and no-decay groups; the teacher is never optimised."""
import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

import projects.posfield  # noqa: F401
from tests.helpers import TINY_PRETRAIN


def _groups_by_name(optim):
    return {g['param_name']: g for g in optim.param_groups}


def test_pretrain_constructor_lr_and_weight_decay():
    from mmpretrain.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(TINY_PRETRAIN)
    model = MODELS.build(cfg.model)
    ow = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1.0, weight_decay=0.04))
    paramwise = dict(layer_decay_rate=0.5, patch_embed_lr_mult=0.2, norm_decay_mult=0.0, flat_decay_mult=0.0,
                     custom_keys={'.pos_field.': dict(decay_mult=0.0)})
    optim = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(type='ViTLayerDecayOptimWrapperConstructor', optim_wrapper_cfg=ow,
                                                  paramwise_cfg=paramwise))(model).optimizer
    groups = _groups_by_name(optim)
    assert not any(name.startswith('teacher.') for name in groups)  # the EMA teacher is not optimised
    # 2 blocks -> depths 0..3; lr = 0.5 ** (3 - depth)
    assert groups['backbone.layers.1.attn.qkv.weight']['lr'] == pytest.approx(0.5 ** 1)
    assert groups['backbone.layers.0.attn.qkv.weight']['lr'] == pytest.approx(0.5 ** 2)
    assert groups['backbone.patch_embed.projection.weight']['lr'] == pytest.approx(0.5 ** 3 * 0.2)
    assert groups['neck.mlp.0.weight']['lr'] == pytest.approx(1.0)
    assert groups['backbone.pos_field.field']['weight_decay'] == 0.0
    assert groups['backbone.layers.0.ln1.weight']['weight_decay'] == 0.0
    assert groups['backbone.layers.0.attn.qkv.weight']['weight_decay'] == pytest.approx(0.04)


DET_SMOKE = 'configs/mask_rcnn/mask-rcnn_vit-tiny-p16-posfield_cpu-smoke_coco-format.py'


def _det_model_and_optim(paramwise):
    from mmdet.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS

    import projects.posfield.det  # noqa: F401
    init_default_scope('mmdet')
    cfg = Config.fromfile(DET_SMOKE)
    model = MODELS.build(cfg.model)
    optim = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type='ViTLayerDecayOptimWrapperConstructor', paramwise_cfg=paramwise,
        optim_wrapper_cfg=dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1.0, weight_decay=0.1))))(model)
    return cfg, model, optim.optimizer


def test_detector_layer_decay_constructor():
    paramwise = Config.fromfile(DET_SMOKE).optim_wrapper.paramwise_cfg  # the detection configs' own settings
    assert paramwise.layer_decay_rate == 0.7
    _, model, optim = _det_model_and_optim(paramwise)
    lr_of = {id(p): g['lr'] for g in optim.param_groups for p in g['params']}
    wd_of = {id(p): g['weight_decay'] for g in optim.param_groups for p in g['params']}
    bb = model.backbone
    assert lr_of[id(bb.layers[1].attn.qkv.weight)] == pytest.approx(0.7 ** 1)  # 2 blocks: depth 2 of 0..3
    assert lr_of[id(bb.layers[0].attn.rel_pos_h)] == pytest.approx(0.7 ** 2)
    assert lr_of[id(bb.patch_embed.projection.weight)] == pytest.approx(0.7 ** 3)
    assert lr_of[id(model.rpn_head.rpn_cls.weight)] == pytest.approx(1.0)
    assert wd_of[id(bb.pos_field.field)] == 0.0 and wd_of[id(bb.layers[0].ln1.weight)] == 0.0
    assert wd_of[id(bb.layers[0].attn.qkv.weight)] == pytest.approx(0.1)
    assert sum(len(g['params']) for g in optim.param_groups) == sum(
        1 for p in model.parameters() if p.requires_grad)


def test_one_constructor_gives_both_packages_the_same_scales():
    """Pre-training (mmpretrain) and detection (mmdet) use one class: same lr scale and weight decay for every
    backbone parameter the two models share, given the same paramwise_cfg."""
    from mmdet.registry import OPTIM_WRAPPER_CONSTRUCTORS as DET
    from mmpretrain.registry import MODELS
    from mmpretrain.registry import OPTIM_WRAPPER_CONSTRUCTORS as PRE

    import projects.posfield.det  # noqa: F401
    from projects.posfield.engine.layer_decay import ViTLayerDecayOptimWrapperConstructor
    assert DET.get('ViTLayerDecayOptimWrapperConstructor') is ViTLayerDecayOptimWrapperConstructor
    assert PRE.get('ViTLayerDecayOptimWrapperConstructor') is ViTLayerDecayOptimWrapperConstructor
    paramwise = dict(layer_decay_rate=0.6, patch_embed_lr_mult=0.2, flat_decay_mult=0.0,
                     custom_keys={'.pos_field.': dict(decay_mult=0.0)})
    _, det_model, det_optim = _det_model_and_optim(paramwise)
    init_default_scope('mmpretrain')
    pre_model = MODELS.build(Config.fromfile(TINY_PRETRAIN).model)
    pre_optim = PRE.build(dict(type='ViTLayerDecayOptimWrapperConstructor', paramwise_cfg=paramwise,
                               optim_wrapper_cfg=dict(type='OptimWrapper',
                                                      optimizer=dict(type='AdamW', lr=1.0, weight_decay=0.1))))(
        pre_model).optimizer
    det_groups, pre_groups = _groups_by_name(det_optim), _groups_by_name(pre_optim)
    shared = sorted(n for n in det_groups if n.startswith('backbone.') and n in pre_groups)
    assert len(pre_model.backbone.layers) == len(det_model.backbone.layers) == 2
    assert 'backbone.layers.1.ffn.layers.1.weight' in shared and 'backbone.pos_field.field' in shared
    assert 'backbone.patch_embed.projection.weight' in shared and 'backbone.ln1.weight' in shared
    for name in shared:
        assert det_groups[name]['lr_scale'] == pytest.approx(pre_groups[name]['lr_scale']), name
        assert det_groups[name]['weight_decay'] == pytest.approx(pre_groups[name]['weight_decay']), name
    assert det_groups['backbone.patch_embed.projection.weight']['lr_scale'] == pytest.approx(0.6 ** 3 * 0.2)


SCHEDULE = 'configs/_base_/schedules/posfield_adamw_100e.py'


def _pretrain_wrapper(**optim_wrapper):
    import torch
    from mmpretrain.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS
    init_default_scope('mmpretrain')
    model = MODELS.build(Config.fromfile(TINY_PRETRAIN).model)
    torch.manual_seed(0)
    cfg = Config.fromfile(SCHEDULE).optim_wrapper
    cfg.update(optim_wrapper)
    cfg.optimizer.pop('fused', None)  # the plain AdamW loop: the same update
    cfg.pop('loss_scale', None)  # AmpOptimWrapper's
    constructor = dict(type=cfg.pop('constructor'), paramwise_cfg=cfg.pop('paramwise_cfg'), optim_wrapper_cfg=cfg)
    return model, OPTIM_WRAPPER_CONSTRUCTORS.build(constructor)(model)


def test_schedule_decays_tokens_and_positions_as_dinov2():
    """DINOv2's param_groups.py exempts only biases, norms and layer-scale gammas (all 1-D here) from weight
    decay: [CLS], the mask tokens and the position embedding / field decay at the schedule's rate."""
    model, wrapper = _pretrain_wrapper(type='OptimWrapper')
    groups = _groups_by_name(wrapper.optimizer)
    base = Config.fromfile(SCHEDULE).optim_wrapper.optimizer.weight_decay
    for name in ('backbone.cls_token', 'backbone.mask_token', 'backbone.cls_pos', 'backbone.pos_mask_token',
                 'backbone.pos_field.field', 'backbone.layers.0.attn.qkv.weight', 'neck.mlp.0.weight',
                 'neck.prototypes.parametrizations.weight.original0'):
        assert groups[name]['weight_decay'] == pytest.approx(base), name
    for name, group in groups.items():
        if group['params'][0].ndim == 1:
            assert group['weight_decay'] == 0.0, name  # biases, norms, layer scales


def test_clip_grad_per_module_clips_backbone_and_head_on_their_own_norms():
    """DINOv2 clips each student module (backbone, each head) to 3.0 on its own norm; one global norm would
    shrink the head's small gradient with the backbone's large one (norms 10 and 1 -> 2.985 and 0.299)."""
    import torch
    model, wrapper = _pretrain_wrapper(type='OptimWrapper', optimizer=dict(type='AdamW', lr=0.0, weight_decay=0.0))
    for part, norm in ((model.backbone, 10.0), (model.neck, 1.0)):
        params = [p for p in part.parameters() if p.requires_grad]
        for p in params:
            p.grad = torch.ones_like(p)
        scale = norm / torch.stack([p.grad.norm() for p in params]).norm()
        for p in params:
            p.grad.mul_(scale)
    wrapper.step()

    def norm(part):
        return torch.stack([p.grad.norm() for p in part.parameters() if p.grad is not None]).norm().item()
    assert norm(model.backbone) == pytest.approx(3.0, rel=1e-4)
    assert norm(model.neck) == pytest.approx(1.0, rel=1e-4)
