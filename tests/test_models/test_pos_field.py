"""The position field: sampling conventions that pre-training and detection rely on."""
import pytest
import torch

from projects.posfield.batch.placement import Placement
from projects.posfield.models.utils.pos_field import PositionField, sample_field


def field(d=3, h=5, w=7):
    return torch.randn(1, d, h, w, generator=torch.Generator().manual_seed(0))


def test_whole_canvas_at_field_resolution_returns_the_field():
    f = field()
    out = sample_field(f, torch.tensor([[0., 0., 1., 1.]]), (5, 7))
    assert out.shape == (1, 35, 3)
    assert torch.allclose(out[0].t().reshape(3, 5, 7), f[0], atol=1e-6)


def test_flipped_box_returns_mirrored_samples():
    f = field()
    box = torch.tensor([[0.1, 0.2, 0.8, 0.9]] * 2)
    out = sample_field(f, box, (4, 6), flips=torch.tensor([False, True])).reshape(2, 4, 6, 3)
    assert torch.allclose(out[1], out[0].flip(1), atol=1e-6)
    assert not torch.allclose(out[1], out[0])


def test_single_cell_box_and_non_square_grids():
    f = field()
    # the box of field cell (row 2, col 3) sampled on a 1x1 grid is that cell's value
    cell = torch.tensor([[3 / 7, 2 / 5, 4 / 7, 3 / 5]])
    assert torch.allclose(sample_field(f, cell, (1, 1))[0, 0], f[0, :, 2, 3], atol=1e-6)
    for hw in [(3, 7), (7, 3), (1, 9)]:
        assert sample_field(f, torch.rand(4, 2).repeat(1, 2).sort(-1).values, hw).shape == (4, hw[0] * hw[1], 3)


def test_one_field_for_many_views_equals_each_view_sampled_alone():
    """The shared-field path (all views' points in one grid) gives each view's own samples and the summed
    field gradient."""
    f = field(d=4, h=6, w=6).requires_grad_()
    boxes = torch.tensor([[0.0, 0.1, 0.5, 0.7], [0.3, 0.2, 0.9, 1.0], [0.2, 0.2, 0.4, 0.4]])
    flips = torch.tensor([False, True, False])
    together = sample_field(f, boxes, (3, 5), flips)
    alone = torch.cat([sample_field(f, boxes[i:i + 1], (3, 5), flips[i:i + 1]) for i in range(3)])
    assert torch.allclose(together, alone, atol=1e-6)
    weights = torch.randn_like(together)
    grad_together, = torch.autograd.grad((together * weights).sum(), f)
    grad_alone, = torch.autograd.grad((alone * weights).sum(), f)
    assert torch.allclose(grad_together, grad_alone, atol=1e-5)


def test_position_field_modes_and_gradients():
    pf = PositionField(8, field_size=4)
    out = pf(torch.tensor([[0.2, 0.2, 0.6, 0.7]]), (3, 3))
    out.sum().backward()
    assert pf.field.grad is not None and pf.field.grad.abs().sum() > 0
    fixed = PositionField(8, field_size=(4, 6), mode='sincos')
    assert not isinstance(fixed.field, torch.nn.Parameter) and 'field' in fixed.state_dict()
    assert torch.allclose(fixed.for_whole_image(2, (4, 6))[1], fixed.field[0].flatten(1).t(), atol=1e-6)
    with pytest.raises(ValueError, match='mode'):
        PositionField(8, mode='rope')
    with pytest.raises(ValueError, match=r'\(B, 4\)'):
        pf(torch.zeros(4), (2, 2))


def test_patch_positions_one_implementation_for_field_and_interpolate():
    from mmpretrain.models.utils import resize_pos_embed

    from projects.posfield.models.utils.pos_field import patch_positions
    torch.manual_seed(0)
    grid = torch.randn(1, 1 + 4 * 6, 8)  # [CLS] position + a 4 x 6 grid, mmpretrain's layout
    got = patch_positions('interpolate', (3, 5), 2, pos_embed=grid[:, 1:], pos_embed_hw=(4, 6), interpolate_offset=0)
    assert torch.allclose(got, resize_pos_embed(grid, (4, 6), (3, 5), mode='bicubic', num_extra_tokens=1)[:, 1:],
                          atol=1e-6)
    assert patch_positions('interpolate', (4, 6), 2, pos_embed=grid[:, 1:], pos_embed_hw=(4, 6)) is not None
    pf = PositionField(8, field_size=5)
    boxes = torch.tensor([[0.1, 0.2, 0.6, 0.9], [0.0, 0.0, 1.0, 1.0]])
    flips = torch.tensor([True, False])
    assert torch.equal(patch_positions('field', (3, 3), 2, pos_field=pf, boxes=boxes, flips=flips),
                       pf(boxes, (3, 3), flips))
    place = Placement(0.2, 0.1, 0.5)
    assert torch.equal(patch_positions('field', (3, 3), 2, pos_field=pf, placement=place),
                       pf.for_whole_image(2, (3, 3), place))
    with pytest.raises(ValueError, match=r'boxes must have shape \(2, 4\)'):
        patch_positions('field', (3, 3), 2, pos_field=pf, boxes=boxes[:1])
    with pytest.raises(ValueError, match='pos_embed_type'):
        patch_positions('rope', (3, 3), 2)


def _dinov2_interpolate_pos_encoding(pos_embed, m, h0, w0, offset=0.1):
    """DINOv2's DinoVisionTransformer.interpolate_pos_encoding (commit b8931f7) on a square M x M patch grid,
    patches only: bicubic, scale factor (size + offset) / M, no antialias."""
    dim = pos_embed.shape[-1]
    out = torch.nn.functional.interpolate(pos_embed.float().reshape(1, m, m, dim).permute(0, 3, 1, 2),
                                          mode='bicubic', antialias=False,
                                          scale_factor=(float(h0 + offset) / m, float(w0 + offset) / m))
    assert tuple(out.shape[-2:]) == (h0, w0)
    return out.permute(0, 2, 3, 1).reshape(1, -1, dim)


def test_baseline_positions_are_dinov2s_interpolate_pos_encoding():
    """The DINOv2-dagger baseline resizes its learned 14 x 14 grid as DINOv2 does: bicubic with
    interpolate_offset 0.1 (not the plain output-size resize)."""
    from projects.posfield.models.backbones import PosFieldViT
    torch.manual_seed(0)
    vit = PosFieldViT(arch='ViT-micro', patch_size=16, img_size=224, pos_embed_type='interpolate')
    vit.init_weights()
    for hw in [(6, 6), (4, 9)]:
        _, got = vit._positions(2, hw, None, None)
        want = _dinov2_interpolate_pos_encoding(vit.pos_embed[:, 1:].detach(), 14, *hw)
        assert torch.allclose(got, want, atol=1e-6), hw
    _, same = vit._positions(2, (14, 14), None, None)
    assert torch.equal(same, vit.pos_embed[:, 1:])  # DINOv2 returns its grid unchanged at its own size
