"""Recomputed attention weights match the library's attention; checkpoints load teacher/student exactly."""
import pytest
import torch

from projects.analysis.attention_recorder import AttentionRecorder
from projects.analysis.encoding import encode
from projects.common.backbone_loader import CheckpointMismatchError, load_backbone
from projects.posfield.evaluation import canvas_box_for


def _tiny_vit():
    from mmpretrain.models.backbones import VisionTransformer
    torch.manual_seed(0)
    vit = VisionTransformer(arch=dict(embed_dims=32, num_layers=3, num_heads=4, feedforward_channels=64),
                            img_size=32, patch_size=8, layer_scale_init_value=0.5)
    vit.init_weights()
    vit.eval()  # mmpretrain's BaseBackbone.train() returns None, so no chaining
    return vit


def test_recorded_weights_reproduce_the_attention_output():
    vit = _tiny_vit()
    outputs = {}
    handle = vit.layers[1].attn.register_forward_hook(lambda m, a, out: outputs.update(out=out, inp=a[0]))
    x = torch.randn(2, 3, 32, 32)
    with AttentionRecorder(vit, [1, -1]) as rec:
        vit(x)
    handle.remove()
    attn = rec.attn[1]
    assert attn.shape == (2, 4, 17, 17) and set(rec.attn) == {1, 2}
    assert torch.allclose(attn.sum(-1), torch.ones(2, 4, 17), atol=1e-5)
    m = vit.layers[1].attn
    v = m.qkv(outputs['inp']).reshape(2, 17, 3, 4, 8).permute(2, 0, 3, 1, 4)[2]
    expected = m.gamma1(m.proj((attn @ v).transpose(1, 2).reshape(2, 17, 32)))
    assert torch.allclose(expected, outputs['out'], atol=1e-5)


def test_recorder_removes_its_hooks_and_checks_layer_indices():
    vit = _tiny_vit()
    with AttentionRecorder(vit):
        assert all(len(layer.attn._forward_pre_hooks) == 1 for layer in vit.layers)
    assert all(len(layer.attn._forward_pre_hooks) == 0 for layer in vit.layers)
    with pytest.raises(IndexError, match='3 blocks'):
        AttentionRecorder(vit, [3])


def test_teacher_and_student_weights_are_loaded_exactly(tiny_ssl_ckpt):
    state = tiny_ssl_ckpt['state']
    teacher = load_backbone(tiny_ssl_ckpt['config'], tiny_ssl_ckpt['checkpoint'])  # default: teacher
    student = load_backbone(tiny_ssl_ckpt['config'], tiny_ssl_ckpt['checkpoint'], key='student')
    name = 'pos_field.field'
    assert torch.equal(teacher.backbone.state_dict()[name], state['teacher.module.backbone.' + name])
    assert torch.equal(student.backbone.state_dict()[name], state['backbone.' + name])
    assert not torch.equal(teacher.backbone.state_dict()[name], student.backbone.state_dict()[name])
    assert 'teacher' in teacher.source and teacher.patch_size == 8 and teacher.img_size == 64
    assert not teacher.backbone.training


def test_backbone_only_checkpoint_and_mismatch_errors(tiny_ssl_ckpt, tmp_path):
    state = tiny_ssl_ckpt['state']
    prefix = 'teacher.module.backbone.'
    bare = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    torch.save(bare, tmp_path / 'bare.pth')
    model = load_backbone(tiny_ssl_ckpt['config'], str(tmp_path / 'bare.pth'), key='student')
    assert torch.equal(model.backbone.cls_pos, bare['cls_pos'])
    no_mask = {k: v for k, v in bare.items() if k not in ('mask_token', 'pos_mask_token')}
    torch.save({'state_dict': no_mask}, tmp_path / 'no_mask.pth')  # pre-training-only tokens may be absent
    model = load_backbone(tiny_ssl_ckpt['config'], str(tmp_path / 'no_mask.pth'))
    assert 'left at init: mask_token, pos_mask_token' in model.source
    assert torch.equal(model.backbone.pos_field.field, bare['pos_field.field'])
    no_cls = {k: v for k, v in no_mask.items() if k not in ('cls_token', 'cls_pos')}
    torch.save({'state_dict': no_cls}, tmp_path / 'no_cls.pth')  # what extract_backbone.py writes
    with pytest.raises(CheckpointMismatchError, match='the \\[CLS\\] token is missing'):
        load_backbone(tiny_ssl_ckpt['config'], str(tmp_path / 'no_cls.pth'))
    model = load_backbone(tiny_ssl_ckpt['config'], str(tmp_path / 'no_cls.pth'),
                          allow_missing=('mask_token', 'pos_mask_token', 'cls_token', 'cls_pos'))
    assert 'cls_token' in model.source
    bad = dict(bare)
    bad.pop('cls_pos')
    bad['pos_field.field'] = torch.zeros(1, 64, 5, 5)
    torch.save(bad, tmp_path / 'bad.pth')
    with pytest.raises(CheckpointMismatchError, match=r'(?s)pos_field\.field.*\(1, 64, 5, 5\).*cls_pos'):
        load_backbone(tiny_ssl_ckpt['config'], str(tmp_path / 'bad.pth'))
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        load_backbone(tiny_ssl_ckpt['config'], str(tmp_path / 'nope.pth'))
    with pytest.raises(ValueError, match='--key'):
        load_backbone(tiny_ssl_ckpt['config'], tiny_ssl_ckpt['checkpoint'], key='ema')


def test_encode_plain_vit_and_field_boxes(plain_vit, tiny_ssl_ckpt):
    plain = load_backbone(plain_vit['config'], plain_vit['checkpoint'])
    assert 'backbone.*' in plain.source
    cls, patches = encode(plain.backbone, torch.randn(2, 3, 32, 32))
    assert cls.shape == (2, 32) and patches.shape == (2, 16, 32)
    assert plain.backbone.out_type == 'cls_token'  # restored after the temporary 'raw'
    field = load_backbone(tiny_ssl_ckpt['config'], tiny_ssl_ckpt['checkpoint'])
    box = canvas_box_for(field.cfg, 'mean')
    assert box is not None and 0 < box[0] < box[2] < 1
    x = torch.randn(1, 3, 64, 64)
    assert not torch.allclose(encode(field.backbone, x, box)[1], encode(field.backbone, x)[1])
    assert canvas_box_for(field.cfg, 'whole') is None
