"""Losses and heads against hand computations; fp32 under autocast; empty masks."""
import math

import torch
import torch.nn.functional as F

from projects.posfield.models.heads import DINOClsHead, DualMIMHead, head_losses, masked_position_accuracy
from projects.posfield.models.losses import KoLeoLoss, sinkhorn_knopp
from projects.posfield.models.necks import DINOProjectionNeck


def test_dino_loss_matches_hand_computation_and_centre_update():
    torch.manual_seed(0)
    head = DINOClsHead(loss=dict(type='DINOClsLoss', out_dim=5, student_temp=0.1, center_momentum=0.9))
    head.center.fill_(0.1)
    s = [torch.randn(3, 5) for _ in range(3)]  # 2 global + 1 local
    t = [torch.randn(3, 5) for _ in range(2)]
    targets = head.targets(torch.cat(t), teacher_temp=0.05).chunk(2)
    got = head_losses(torch.cat(s), [head.loss_rows(targets, n_views=3)])['loss_image']
    expected, pairs = 0.0, 0
    for i in range(2):
        q = F.softmax((t[i] - 0.1) / 0.05, -1)
        for j in range(3):
            if i != j:
                expected += (-q * F.log_softmax(s[j] / 0.1, -1)).sum(-1).mean()
                pairs += 1
    assert torch.allclose(got, expected / pairs, atol=1e-5)
    assert torch.allclose(head.center, 0.9 * 0.1 + 0.1 * torch.cat(t).mean(0, keepdim=True), atol=1e-6)


def test_sinkhorn_marginals():
    q = sinkhorn_knopp(torch.randn(8, 4), temp=1.0, n_iters=50)
    assert torch.allclose(q.sum(1), torch.ones(8), atol=1e-4)  # each sample is a distribution
    assert torch.allclose(q.sum(0), torch.full((4,), 2.0), atol=1e-2)  # prototypes used equally


def test_ibot_empty_weighted_and_autocast():
    head = DualMIMHead(loss=dict(type='iBOTPatchLoss', out_dim=6))

    def loss(student, targets, weights=None):  # every row content-masked: loss_content is the iBOT loss
        return head_losses(student, [head.loss_rows(targets, len(targets), weights)])['loss_content']

    s = torch.randn(0, 6, requires_grad=True)
    out = loss(s, head.targets(torch.randn(0, 6), 0.04))
    out.backward()
    assert out.item() == 0.0 and torch.isfinite(out)
    s = torch.randn(4, 6, requires_grad=True)
    t = torch.randn(4, 6)
    w = torch.tensor([0.5, 0.5, 1.0, 0.0]) / 8  # 1 / masked tokens of the view / global views in the batch
    ce = (-F.softmax(t / 0.04, -1) * F.log_softmax(s / 0.1, -1)).sum(-1)
    targets = head.targets(t, 0.04)
    assert torch.allclose(loss(s, targets, w), (ce * w).sum(), atol=1e-5)  # not renormalised by sum(w)
    assert torch.allclose(loss(s, targets), ce.mean(), atol=1e-5)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        val = loss(s.bfloat16(), targets)
    assert val.dtype == torch.float32 and torch.isfinite(val)


def test_koleo_formula_and_ordering():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    expected = -torch.log(torch.tensor([math.sqrt(2)] * 3)).mean()
    assert torch.allclose(KoLeoLoss()(x), expected, atol=1e-5)
    near = torch.tensor([[1.0, 0.0], [1.0, 0.01]])
    assert KoLeoLoss()(near) > KoLeoLoss()(x)
    assert KoLeoLoss()(torch.randn(1, 4)).item() == 0.0
    assert torch.isfinite(KoLeoLoss()(torch.ones(3, 4)))  # identical points: eps-guarded


def test_neck_shapes_fp32_and_fixed_magnitude():
    neck = DINOProjectionNeck(in_channels=8, hidden_channels=16, bottleneck_channels=4, num_prototypes=10,
                              norm_last_layer=True)
    neck.init_weights()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = neck(torch.randn(5, 8))
    assert out.shape == (5, 10) and out.dtype == torch.float32
    names = [n for n, p in neck.named_parameters() if p.requires_grad]
    assert all(not n.endswith('original0') for n in names)  # g is fixed with norm_last_layer
    assert any(n.startswith('prototypes.') for n in names)
    assert out.abs().max() <= 1.0 + 1e-5  # cosine logits


def test_neck_prototype_magnitude_starts_at_one_and_is_trained_by_default():
    """DINOv2's DINOHead: weight_g filled with 1 and trained like any other parameter."""
    neck = DINOProjectionNeck(in_channels=8, hidden_channels=16, bottleneck_channels=4, num_prototypes=10)
    neck.init_weights()
    g = neck.prototypes.parametrizations.weight.original0
    assert g.requires_grad and torch.equal(g, torch.ones(10, 1))
    neck(torch.randn(5, 8)).square().sum().backward()
    assert g.grad is not None and g.grad.abs().sum() > 0


def test_dual_head_shares_one_centre_updated_once():
    head = DualMIMHead(loss=dict(type='iBOTPatchLoss', out_dim=4, center_momentum=0.5))
    tc, tp = torch.randn(3, 4), torch.randn(2, 4)
    targets = head.targets(torch.cat([tc, tp]), 0.04)
    assert torch.allclose(targets, F.softmax(torch.cat([tc, tp]) / 0.04, -1), atol=1e-6)  # centre was 0
    out = head_losses(torch.randn(5, 4), [head.loss_rows(targets, n_content=3)])
    assert set(out) == {'loss_content', 'loss_pos'}
    assert torch.allclose(head.center, 0.5 * torch.cat([tc, tp]).mean(0, keepdim=True), atol=1e-6)
    assert masked_position_accuracy(tp, tp) == 1.0
