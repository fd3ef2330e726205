"""PosFieldSSL: loss keys, masked tokens only through the patch head, teacher EMA, schedules, freezing."""
import math

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import BaseDataElement
from mmengine.optim import OptimWrapper
from mmpretrain.registry import MODELS

import projects.posfield  # noqa: F401
from tests.helpers import TINY_PRETRAIN


def build(**overrides):
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(TINY_PRETRAIN)
    cfg.model.update(overrides)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.set_train_length(max_iters=100, iters_per_epoch=10)
    return model, cfg


def fake_batch(batch=2, n_global=2, n_local=2, gsize=64, lsize=32, patch=8, seed=0):
    rng = np.random.default_rng(seed)
    inputs = [torch.from_numpy((rng.random((batch, 3, gsize, gsize)) * 255).astype(np.uint8)) for _ in range(n_global)]
    inputs += [torch.from_numpy((rng.random((batch, 3, lsize, lsize)) * 255).astype(np.uint8)) for _ in range(n_local)]
    g = gsize // patch
    samples = []
    for b in range(batch):
        s = BaseDataElement()
        s.set_field(np.tile(np.array([[0.1, 0.1, 0.5, 0.6]], np.float32), (n_global + n_local, 1)), 'view_boxes')
        s.set_field(np.array([False, True] * ((n_global + n_local) // 2)), 'view_flips')
        cm = np.zeros((n_global, g, g), bool)
        pm = np.zeros((n_global, g, g), bool)
        cm[0, :2, :3] = True  # 6 content-masked tokens in view 0
        pm[1, 3, :] = True  # 8 position-masked tokens in view 1
        s.set_field(cm, 'content_masks')
        s.set_field(pm, 'pos_masks')
        samples.append(s)
    return dict(inputs=inputs, data_samples=samples)


def test_loss_keys_and_masked_tokens_only_through_the_head():
    model, _ = build()
    rows = []
    model.neck.register_forward_hook(lambda m, i, o: rows.append(i[0].shape[0]))
    data = model.data_preprocessor(fake_batch(), True)
    losses = model(**data, mode='loss')
    assert {k for k in losses if k.startswith('loss')} == {'loss_image', 'loss_content', 'loss_pos', 'loss_koleo'}
    assert all(torch.isfinite(v).all() for v in losses.values())
    for key in ('teacher_entropy', 'center_norm', 'pos_acc', 'teacher_temp', 'momentum'):
        assert key in losses
    # student neck calls: [CLS] of 4 views x 2 images, 6 x 2 content tokens, 8 x 2 position tokens
    assert rows == [8, 12, 16]


def test_teacher_moves_towards_student_by_the_momentum():
    model, cfg = build()
    optim = OptimWrapper(torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5))
    before = {k: v.clone() for k, v in model.teacher.module.state_dict().items()}
    student_before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    m = model.schedule(0)['momentum']
    model.train_step(fake_batch(), optim)
    assert int(model.step) == 1
    key = 'layers.0.attn.qkv.weight'
    s_after = model.backbone.state_dict()[key]
    t_after = model.teacher.module.state_dict()['backbone.' + key]
    assert not torch.equal(s_after, student_before[key])  # the student moved
    assert torch.allclose(t_after, m * before['backbone.' + key] + (1 - m) * s_after, atol=1e-6)
    # in the right direction: closer to the student than before
    assert (t_after - s_after).norm() < (before['backbone.' + key] - s_after).norm()


def test_schedules_follow_their_formulas():
    model, _ = build(momentum=(0.992, 1.0), teacher_temp=(0.04, 0.07), teacher_temp_warmup_epochs=3,
                     freeze_prototypes_epochs=1)
    assert model.schedule(0)['momentum'] == pytest.approx(0.992)
    assert model.schedule(50)['momentum'] == pytest.approx(1.0 - 0.008 * (math.cos(math.pi * 0.5) + 1) / 2)
    assert model.schedule(100)['momentum'] == pytest.approx(1.0)
    assert model.schedule(0)['teacher_temp'] == pytest.approx(0.04)
    assert model.schedule(15)['teacher_temp'] == pytest.approx(0.055)
    assert model.schedule(30)['teacher_temp'] == pytest.approx(0.07)
    assert model.schedule(90)['teacher_temp'] == pytest.approx(0.07)
    assert model.schedule(9)['prototypes_frozen'] == 1.0 and model.schedule(10)['prototypes_frozen'] == 0.0


def test_prototypes_frozen_in_the_first_epoch_only():
    model, _ = build(freeze_prototypes_epochs=1)
    params = [p for p in model.parameters() if p.requires_grad]
    optim = OptimWrapper(torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1))
    proto = model.neck.prototypes.parametrizations.weight.original1
    mlp = model.neck.mlp[0].weight
    p0, m0 = proto.detach().clone(), mlp.detach().clone()
    model.train_step(fake_batch(), optim)
    assert torch.equal(proto, p0) and not torch.equal(mlp, m0)
    model.step.fill_(10)  # second epoch
    model.train_step(fake_batch(seed=1), optim)
    assert not torch.equal(proto, p0)


def test_baseline_mode_and_clear_errors():
    model, _ = build(backbone=dict(type='PosFieldViT', arch=dict(embed_dims=64, num_layers=2, num_heads=2,
                                                               feedforward_channels=128),
                                   patch_size=8, img_size=64, pos_embed_type='interpolate'))
    data = model.data_preprocessor(fake_batch(), True)
    with pytest.raises(ValueError, match='pos_mask needs'):
        model(**data, mode='loss')
    batch = fake_batch()
    for s in batch['data_samples']:
        s.pos_masks[:] = False
    data = model.data_preprocessor(batch, True)
    assert torch.isfinite(model(**data, mode='loss')['loss_image'])
    with pytest.raises(ValueError, match='list of >= 2 view batches'):
        model.loss(data['inputs'][0], data['data_samples'])
    from mmengine.logging import MessageHub
    MessageHub.get_instance('no_runner_here')  # a fresh current hub: no max_iters from earlier runner tests
    fresh = MODELS.build(Config.fromfile(TINY_PRETRAIN).model)
    with pytest.raises(RuntimeError, match='training length'):
        fresh.schedule()
