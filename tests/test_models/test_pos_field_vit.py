"""PosFieldViT: any view size, masks that replace exactly what they should, flips, layer depths."""
import pytest
import torch

from projects.posfield.models.backbones import PosFieldViT

ARCH = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)


def vit(**kw):
    torch.manual_seed(0)
    m = PosFieldViT(arch=ARCH, patch_size=8, img_size=32, pos_field=dict(field_size=6), drop_path_rate=0.0, **kw)
    m.init_weights()
    return m.eval()


def test_shapes_for_several_sizes():
    m = vit()
    for h, w in [(32, 32), (16, 16), (24, 40)]:
        cls, patches = m.forward_tokens(torch.randn(2, 3, h, w), torch.tensor([[0., 0., .5, .5]] * 2))
        assert cls.shape == (2, 32) and patches.shape == (2, (h // 8) * (w // 8), 32)
    assert m(torch.randn(1, 3, 32, 32))[0].shape == (1, 32)
    base = vit(pos_embed_type='interpolate')
    assert base.forward_tokens(torch.randn(1, 3, 16, 16))[1].shape == (1, 4, 32)
    with pytest.raises(ValueError, match='pos_mask'):
        base.forward_tokens(torch.randn(1, 3, 16, 16), pos_mask=torch.ones(1, 2, 2, dtype=torch.bool))
    # an all-False position mask is a no-op in the baseline (the algorithm always passes one)
    x = torch.randn(1, 3, 16, 16)
    assert torch.equal(base.forward_tokens(x, pos_mask=torch.zeros(1, 2, 2, dtype=torch.bool))[1],
                       base.forward_tokens(x)[1])


def _embedded(m, x, **kw):
    tokens, _ = m._embed(x, **kw)
    return tokens[:, 1:]


def test_content_and_position_masks_replace_only_masked_tokens():
    m = vit()
    x = torch.randn(1, 3, 32, 32)
    box = torch.tensor([[0.1, 0.1, 0.9, 0.9]])
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, 1, 2] = True
    plain = _embedded(m, x, boxes=box)
    assert torch.equal(_embedded(m, x, boxes=box, content_mask=torch.zeros_like(mask)), plain)
    content = _embedded(m, x, boxes=box, content_mask=mask)
    pos = m.pos_field(box, (4, 4))
    assert torch.allclose(content[0, 6], m.mask_token[0, 0] + pos[0, 6], atol=1e-6)  # token 6 = row 1, col 2
    keep = torch.ones(16, dtype=torch.bool)
    keep[6] = False
    assert torch.equal(content[0, keep], plain[0, keep])
    posm = _embedded(m, x, boxes=box, pos_mask=mask)
    patches, _ = m.patch_embed(x)
    assert torch.allclose(posm[0, 6], patches[0, 6] + m.pos_mask_token[0, 0], atol=1e-6)
    assert torch.equal(posm[0, keep], plain[0, keep])
    with pytest.raises(ValueError, match='content_mask'):
        m.forward_tokens(x, box, content_mask=torch.zeros(1, 3, 3, dtype=torch.bool))


def test_flipped_view_sees_mirrored_positions():
    m = vit()
    x = torch.zeros(2, 3, 32, 32)  # zero content: the embedding is bias + position
    box = torch.tensor([[0.2, 0.1, 0.7, 0.6]] * 2)
    emb = _embedded(m, x, boxes=box, flips=torch.tensor([False, True])).reshape(2, 4, 4, -1)
    assert torch.allclose(emb[1], emb[0].flip(1), atol=1e-6)


def test_layer_depths_and_no_unused_pos_embed():
    m = vit()
    assert m.pos_embed is None and 'pos_embed' not in dict(m.named_parameters())
    assert m.get_layer_depth('backbone.pos_field.field', 'backbone.') == (0, 4)
    assert m.get_layer_depth('backbone.pos_mask_token', 'backbone.') == (0, 4)
    assert m.get_layer_depth('backbone.layers.1.attn.qkv.weight', 'backbone.') == (2, 4)
    assert m.get_layer_depth('backbone.ln1.weight', 'backbone.') == (3, 4)


def test_arch_names_follow_the_paper_and_mmpretrain_names_are_refused():
    from projects.posfield.models.utils.archs import VIT_ARCHS
    s = PosFieldViT(arch='ViT-S', pos_field=dict(field_size=4))
    assert s.embed_dims == 384 and len(s.layers) == 12 and s.layers[0].attn.num_heads == 6
    assert s.layers[0].ffn.layers[0][0].out_features == VIT_ARCHS['ViT-S']['feedforward_channels']
    with pytest.raises(ValueError, match="use arch='ViT-S'"):
        PosFieldViT(arch='small')


@pytest.mark.parametrize('mode', ['bernoulli', 'dinov2'])
def test_keep_patches_equals_the_full_pass_at_those_tokens(mode):
    """The last layer on [CLS] + kept patches only: same values and gradients as the full pass (float64,
    stochastic depth on, same seed), and its FFN sees only those rows."""
    torch.manual_seed(0)
    m = PosFieldViT(arch=ARCH, patch_size=8, img_size=32, pos_field=dict(field_size=6), drop_path_rate=0.4,
                    drop_path_uniform=True, drop_path_mode=mode).double()
    m.init_weights()
    m.train()
    x = torch.randn(6, 3, 32, 32, dtype=torch.float64)
    keep = torch.rand(6, 16) < 0.3
    keep[2] = False  # a view with no kept patch: its [CLS] alone
    seen = []
    m.layers[-1].ffn.layers[0].register_forward_hook(  # the FFN's first block: (rows, D) in
        lambda mod, inp, out: seen.append(inp[0].numel() // inp[0].shape[-1]))

    def run(**kw):
        m.zero_grad(set_to_none=True)
        torch.manual_seed(1)
        cls, patches = m.forward_tokens(x, **kw)
        if 'keep_patches' not in kw:
            patches = patches[keep]
        ((cls ** 2).sum() + (patches * torch.linspace(-1, 1, patches.shape[-1])).sum()).backward()
        return cls, patches, {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}

    cls_full, patches_full, grads_full = run()
    cls_kept, patches_kept, grads_kept = run(keep_patches=keep)
    assert torch.allclose(cls_kept, cls_full, rtol=1e-12, atol=1e-12)
    assert patches_kept.shape == (int(keep.sum()), 32)
    assert torch.allclose(patches_kept, patches_full, rtol=1e-12, atol=1e-12)
    assert grads_kept.keys() == grads_full.keys()
    for name, grad in grads_full.items():
        assert torch.allclose(grads_kept[name], grad, rtol=1e-10, atol=1e-12), name
    kept_rows = seen[-1]  # the FFN ran on the kept samples' rows only: at most [CLS] + kept patches
    assert kept_rows <= 6 + int(keep.sum()) and seen[0] > kept_rows
    with torch.no_grad():
        torch.manual_seed(1)
        cls_only = m.forward_cls(x)
        torch.manual_seed(1)
        assert torch.allclose(cls_only, m.forward_tokens(x)[0], rtol=1e-12, atol=1e-12)
    assert seen[-2] <= 6 < seen[-1]  # forward_cls (before the full pass): the last FFN ran on [CLS] rows only


def test_keep_patches_of_the_wrong_shape_is_refused():
    m = vit()
    with pytest.raises(ValueError, match=r'keep_patches must have shape \(2, 16\)'):
        m.forward_tokens(torch.randn(2, 3, 32, 32), keep_patches=torch.ones(2, 4, dtype=torch.bool))


@pytest.mark.parametrize('pos_embed_type', ['field', 'interpolate'])
def test_init_is_dinov2s(pos_embed_type):
    """DINOv2's DinoVisionTransformer.init_weights: Linear weights trunc-normal std 0.02 and zero biases (attention
    and FFN alike), [CLS] N(0, 1e-6), mask token zero, position embedding std 0.02."""
    torch.manual_seed(0)
    m = PosFieldViT(arch='ViT-S', patch_size=16, img_size=224, pos_embed_type=pos_embed_type)
    m.init_weights()
    linears = [mod for mod in m.modules() if isinstance(mod, torch.nn.Linear)]
    assert len(linears) == 4 * len(m.layers)  # qkv, proj and the FFN's two in every block
    for lin in linears:
        assert lin.weight.std().item() == pytest.approx(0.02, rel=0.05)
        assert lin.bias is None or torch.equal(lin.bias, torch.zeros_like(lin.bias))
    assert 0 < m.cls_token.std().item() < 1e-5
    assert torch.equal(m.mask_token, torch.zeros_like(m.mask_token))
    if pos_embed_type == 'interpolate':
        assert m.pos_embed.std().item() == pytest.approx(0.02, rel=0.05)
    else:
        assert m.pos_field.field.std().item() == pytest.approx(0.02, rel=0.05)
        assert torch.equal(m.pos_mask_token, torch.zeros_like(m.pos_mask_token))
