"""The chunked soft-target cross-entropy against the formula written out with autograd."""
import importlib

import pytest
import torch
import torch.nn.functional as F

from projects.posfield.models.heads import DINOClsHead, head_losses
from projects.posfield.models.losses import soft_cross_entropy

# the module (the package exports the function under the same name)
sce_module = importlib.import_module('projects.posfield.models.losses.soft_cross_entropy')


def plain(logits, targets, temps):
    """-sum(t * log_softmax(s / temp)) per row, one temperature per block, by autograd."""
    rows = [(-t * F.log_softmax(s / temp, dim=-1)).sum(-1)
            for s, t, temp in zip(logits.split([t.shape[0] for t in targets]), targets, temps)]
    return torch.cat(rows)


def blocks(rows, classes, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    targets = [F.softmax(torch.randn(n, classes, generator=gen, dtype=dtype) * 3, -1) for n in rows]
    targets[0] = targets[0] * 2  # rows need not sum to one (a sum of two teachers' targets)
    logits = torch.randn(sum(rows), classes, generator=gen, dtype=dtype) * 2
    weights = torch.randn(sum(rows), generator=gen, dtype=dtype)
    return logits, targets, weights


@pytest.mark.parametrize('chunk', [None, 7, 64])  # several chunks per block, chunks that straddle nothing
def test_values_and_gradients_equal_the_formula_in_float64(monkeypatch, chunk):
    if chunk is not None:  # chunk = rows per chunk at 100 classes
        monkeypatch.setattr(sce_module, '_CPU_CHUNK_ELEMENTS', chunk * 100)
    logits, targets, weights = blocks([5, 11, 0, 3], 100)
    temps = [0.07, 0.3, 0.2, 0.05]  # 0.07 and 0.3 have no exact float32 inverse
    got_in = logits.clone().requires_grad_()
    ref_in = logits.clone().requires_grad_()
    got = soft_cross_entropy(got_in, targets, temps)
    ref = plain(ref_in, targets, temps)
    (got * weights).sum().backward()
    (ref * weights).sum().backward()
    assert got.shape == (19,)
    assert torch.allclose(got, ref, rtol=1e-12, atol=1e-12)
    assert torch.allclose(got_in.grad, ref_in.grad, rtol=1e-10, atol=1e-12)


def test_float32_close_to_float64_and_one_tensor_of_targets():
    logits, targets, weights = blocks([40], 5000)
    x = logits.float().requires_grad_()
    got = soft_cross_entropy(x, targets[0].float(), 0.1)
    (got * weights.float()).sum().backward()
    ref_in = logits.clone().requires_grad_()
    ref = plain(ref_in, targets, [0.1])
    (ref * weights).sum().backward()
    assert torch.allclose(got.double(), ref, rtol=1e-5, atol=1e-4)
    assert float((x.grad.double() - ref_in.grad).abs().max()) < 1e-5 * float(ref_in.grad.abs().max())


def test_targets_that_require_grad_take_the_autograd_formula_and_low_precision_is_cast_up():
    logits, targets, _ = blocks([3, 4], 20)
    t = [b.clone().requires_grad_() for b in targets]
    out = soft_cross_entropy(logits, t, 0.5)
    out.sum().backward()
    assert t[0].grad is not None and torch.allclose(out, plain(logits, targets, [0.5, 0.5]))
    half = soft_cross_entropy(logits.bfloat16(), [b.bfloat16() for b in targets], 0.5)
    assert half.dtype == torch.float32 and torch.allclose(half.double(), out.detach(), rtol=0.05, atol=0.05)


def test_forward_mode_ad_takes_the_autograd_formula():
    import torch.autograd.forward_ad as fwAD
    logits, targets, _ = blocks([4], 9)
    tangent = torch.randn_like(logits)
    with fwAD.dual_level():
        out = soft_cross_entropy(fwAD.make_dual(logits, tangent), targets, 0.1)
        jvp = fwAD.unpack_dual(out).tangent
    x = logits.clone().requires_grad_()
    grad = torch.autograd.grad(plain(x, targets, [0.1]).sum(), x)[0]
    assert torch.allclose(jvp.sum(), (grad * tangent).sum(), rtol=1e-10)


def test_no_rows_keeps_the_graph():
    x = torch.randn(0, 8, requires_grad=True)
    out = soft_cross_entropy(x, torch.zeros(0, 8), 0.1)
    (out.sum() * 0).backward()
    assert out.shape == (0,) and x.grad.shape == (0, 8)


def test_clear_errors():
    x = torch.randn(4, 6)
    with pytest.raises(ValueError, match='4 rows in all'):
        soft_cross_entropy(x, [torch.rand(3, 6)], 0.1)
    with pytest.raises(ValueError, match='2 temperatures for 1 target blocks'):
        soft_cross_entropy(x, [torch.rand(4, 6)], [0.1, 0.2])
    for bad in (0.0, float('nan')):
        with pytest.raises(ValueError, match='temperatures must be > 0'):
            soft_cross_entropy(x, torch.rand(4, 6), bad)
    with pytest.raises(ValueError, match=r'logits must be \(rows, classes\)'):
        soft_cross_entropy(x[None], torch.rand(4, 6), 0.1)
    out = soft_cross_entropy(x.requires_grad_(), torch.rand(4, 6), 0.1).sum()
    out.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match='can run only once'):
        out.backward()


@pytest.mark.parametrize('n_targets', [1, 2, 3])
def test_dino_row_targets_give_the_mean_over_pairs(n_targets):
    torch.manual_seed(n_targets)
    head = DINOClsHead(loss=dict(type='DINOClsLoss', out_dim=7, student_temp=0.1))
    student = [torch.randn(4, 7, dtype=torch.float64, requires_grad=True) for _ in range(5)]
    targets = [F.softmax(torch.randn(4, 7, dtype=torch.float64), -1) for _ in range(n_targets)]
    got = head_losses(torch.cat(student), [head.loss_rows(targets, n_views=5)])['loss_image']
    pairs = [(i, j) for i in range(n_targets) for j in range(5) if i != j]
    expected = sum((-targets[i] * F.log_softmax(student[j] / 0.1, -1)).sum(-1).mean() for i, j in pairs) / len(pairs)
    assert torch.allclose(got, expected, rtol=1e-12)
    got_grads = torch.autograd.grad(got, student)
    ref_grads = torch.autograd.grad(expected, student, allow_unused=True)  # one teacher crop: crop 0 has no pair
    ref_grads = [torch.zeros_like(s) if g is None else g for s, g in zip(student, ref_grads)]
    assert all(torch.allclose(a, b, rtol=1e-10, atol=1e-14) for a, b in zip(got_grads, ref_grads))
