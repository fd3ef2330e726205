"""Detector backbone: shapes, padding, field use; loading pre-trained checkpoints with a coverage check."""

import pytest
import torch
from mmengine.registry import init_default_scope

import projects.posfield.det  # noqa: F401
from projects.common.backbone_loader import CheckpointMismatchError
from projects.posfield.det import PosFieldViTDet
from tests.helpers import load_tool

TINY = dict(embed_dims=64, num_layers=2, num_heads=2, feedforward_channels=128)


def detector_backbone(**kw):
    args = dict(arch=TINY, patch_size=8, window_size=3, global_attn_indexes=(1, ), pos_field=dict(field_size=8),
                drop_path_rate=0.0)
    args.update(kw)
    return PosFieldViTDet(**args)


def test_output_stride_non_square_and_non_window_multiples():
    bb = detector_backbone().eval()
    for h, w in [(64, 64), (40, 72), (56, 24)]:  # grids 5x9 and 7x3 are not multiples of the window 3
        (out, ) = bb(torch.randn(1, 3, h, w))
        assert out.shape == (1, 64, h // 8, w // 8)


def test_positions_come_from_the_field_whole_canvas_or_mean():
    bb = detector_backbone()
    pos = bb._positions(1, (8, 8))
    assert torch.allclose(pos[0].t().reshape(64, 8, 8), bb.pos_field.field[0], atol=1e-6)
    mean = detector_backbone(placement='mean')
    mean.pos_field.load_state_dict(bb.pos_field.state_dict())
    assert not torch.allclose(mean._positions(1, (8, 8)), pos)


def test_pretrain_checkpoint_loads_with_full_coverage_teacher_and_student_differ(tiny_ssl_ckpt):
    path, model = tiny_ssl_ckpt['checkpoint'], tiny_ssl_ckpt['model']
    init_default_scope('mmdet')
    teacher = detector_backbone(init_cfg=dict(type='Pretrained', checkpoint=path))
    teacher.init_weights()
    student = detector_backbone(init_cfg=dict(type='Pretrained', checkpoint=path, key='student'))
    student.init_weights()
    t_ref = model.teacher.module['backbone'].state_dict()
    s_ref = model.backbone.state_dict()
    for name, value in teacher.state_dict().items():
        assert torch.equal(value, t_ref[name]), name
        assert torch.equal(student.state_dict()[name], s_ref[name]), name
    assert not torch.equal(teacher.state_dict()['layers.0.attn.qkv.weight'],
                           student.state_dict()['layers.0.attn.qkv.weight'])


def test_wrong_checkpoint_fails_naming_keys_and_shapes(tiny_ssl_ckpt, tmp_path):
    path = tiny_ssl_ckpt['checkpoint']
    wide = detector_backbone(arch=dict(TINY, embed_dims=32, feedforward_channels=64),
                             init_cfg=dict(type='Pretrained', checkpoint=path))
    with pytest.raises(CheckpointMismatchError, match=r'layers.0.attn.qkv.weight: backbone \(96, 32\), '
                                                      r'checkpoint \(192, 64\)'):
        wide.init_weights()
    deeper = detector_backbone(arch=dict(TINY, num_layers=3), global_attn_indexes=(2, ),
                               init_cfg=dict(type='Pretrained', checkpoint=path))
    with pytest.raises(CheckpointMismatchError, match='missing in checkpoint.*layers.2'):
        deeper.init_weights()
    patch16 = detector_backbone(patch_size=16, init_cfg=dict(type='Pretrained', checkpoint=path))
    with pytest.raises(CheckpointMismatchError, match='patch_embed.projection.weight'):
        patch16.init_weights()
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        detector_backbone(init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'nope.pth'))).init_weights()


def test_timm_vit_checkpoint_loads_in_interpolate_mode(tmp_path):
    d, depth = 64, 2
    timm = {'cls_token': torch.zeros(1, 1, d), 'pos_embed': torch.randn(1, 1 + 16, d),
            'patch_embed.proj.weight': torch.randn(d, 3, 8, 8), 'patch_embed.proj.bias': torch.randn(d),
            'norm.weight': torch.ones(d), 'norm.bias': torch.zeros(d)}
    for i in range(depth):
        p = f'blocks.{i}.'
        timm.update({p + 'norm1.weight': torch.ones(d), p + 'norm1.bias': torch.zeros(d),
                     p + 'attn.qkv.weight': torch.randn(3 * d, d), p + 'attn.qkv.bias': torch.zeros(3 * d),
                     p + 'attn.proj.weight': torch.randn(d, d), p + 'attn.proj.bias': torch.zeros(d),
                     p + 'ls1.gamma': torch.ones(d), p + 'ls2.gamma': torch.ones(d),
                     p + 'norm2.weight': torch.ones(d), p + 'norm2.bias': torch.zeros(d),
                     p + 'mlp.fc1.weight': torch.randn(128, d), p + 'mlp.fc1.bias': torch.zeros(128),
                     p + 'mlp.fc2.weight': torch.randn(d, 128), p + 'mlp.fc2.bias': torch.zeros(d)})
    path = tmp_path / 'timm.pth'
    torch.save(timm, path)
    bb = detector_backbone(pos_embed_type='interpolate', pretrain_img_size=32,
                           init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    bb.init_weights()
    assert torch.equal(bb.layers[1].ffn.layers[1].weight, timm['blocks.1.mlp.fc2.weight'])
    assert torch.equal(bb.pos_embed, timm['pos_embed'][:, 1:])  # same 4x4 grid: only the [CLS] slot dropped


def test_extract_backbone_tool(tiny_ssl_ckpt, tmp_path, capsys):
    path, model = tiny_ssl_ckpt['checkpoint'], tiny_ssl_ckpt['model']
    tool = load_tool('tools/model_converters/extract_backbone.py')
    out = tmp_path / 'bb.pth'
    kept = tool.main([path, str(out)])
    assert 'cls_token' in kept and 'pos_field.field' in kept  # complete: the analysis tools need [CLS]
    assert 'teacher' in capsys.readouterr().out
    saved = torch.load(out, weights_only=True)
    assert torch.equal(saved['state_dict']['ln1.weight'], model.teacher.module['backbone'].ln1.weight)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith('.tmp')] == []
    init_default_scope('mmdet')
    bb = detector_backbone(init_cfg=dict(type='Pretrained', checkpoint=str(out)))
    bb.init_weights()  # full coverage from the converted file too
    student = tmp_path / 'student.pth'
    tool.main([path, str(student), '--key', 'student'])
    key = 'layers.0.attn.qkv.weight'
    assert not torch.equal(torch.load(student, weights_only=True)['state_dict'][key], saved['state_dict'][key])
