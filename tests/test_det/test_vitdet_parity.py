"""ViTDet parity of the detector: arch names, fixed input frame, simple feature pyramid without ReLU, relative
position bias, field size from the checkpoint."""
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import projects.posfield.det  # noqa: F401
from projects.common.backbone_loader import CheckpointMismatchError
from projects.posfield.det import PosFieldViTDet, SimpleFPN
from projects.posfield.det.pos_field_vitdet import get_rel_pos
from tests.helpers import ROOT

MICRO = dict(arch='ViT-micro', patch_size=8, window_size=3, global_attn_indexes=(1, ), img_size=48,
             pos_field=dict(field_size=8), drop_path_rate=0.0)
DET_CONFIGS = {
    'ViT-B': 'configs/mask_rcnn/mask-rcnn_vit-b-p16-posfield_lsj-1024-12e_coco.py',
    'ViT-S': 'configs/mask_rcnn/mask-rcnn_vit-s-p16-posfield_lsj-1024-12e_coco.py',
    'ViT-micro': 'configs/mask_rcnn/mask-rcnn_vit-tiny-p16-posfield_cpu-smoke_coco-format.py',
    'ViT-mini': 'configs/demo/mask-rcnn_vit-mini-p16_demo-coco.py',
}


def _cfg(name):
    return Config.fromfile(osp.join(ROOT, DET_CONFIGS[name]))


def test_arch_names_are_the_papers_and_mmpretrain_names_are_refused():
    from projects.posfield.models.utils.archs import vit_arch
    for name in ('ViT-S', 'ViT-micro'):
        bb = PosFieldViTDet(**dict(MICRO, arch=name))
        assert bb.embed_dims == vit_arch(name)['embed_dims'] and bb.num_layers == vit_arch(name)['num_layers']
        assert bb.layers[0].attn.num_heads == vit_arch(name)['num_heads']
    with pytest.raises(ValueError, match="use arch='ViT-S'"):
        PosFieldViTDet(**dict(MICRO, arch='small'))


@pytest.mark.parametrize('name', sorted(DET_CONFIGS))
def test_detection_configs_name_their_arch_and_the_neck_follows_it(name):
    from projects.posfield.models.utils.archs import vit_arch
    cfg = _cfg(name)
    assert cfg.model.backbone.arch == name
    assert cfg.model.neck.backbone_channel == vit_arch(name)['embed_dims']
    # one input frame: training batches padded to it, test images padded to it, and the backbone sized for it
    (pad, ) = cfg.model.data_preprocessor.batch_augments
    assert pad.type == 'BatchFixedSizePad'
    size = tuple(pad.size)
    crop = next(t for t in cfg.train_dataloader.dataset.pipeline if t.type == 'RandomCrop')
    test_pad = next(t for t in cfg.test_dataloader.dataset.pipeline if t.type == 'PadToFrame')
    assert tuple(crop.crop_size) == size and tuple(test_pad.size) == size
    assert cfg.model.backbone.img_size == size[0] == size[1]
    assert cfg.model.backbone.use_rel_pos is True


def test_train_batches_are_padded_to_the_fixed_frame_whatever_the_images():
    """The whole-canvas field spans the same frame in training (any batch) and test."""
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    init_default_scope('mmdet')
    cfg = _cfg('ViT-micro')
    size = tuple(cfg.model.data_preprocessor.batch_augments[0].size)
    pre = MODELS.build(cfg.model.data_preprocessor)
    for shapes in [[(64, 96), (80, 40)], [(32, 32)], [(size[0], 70)]]:
        samples = []
        for h, w in shapes:
            s = DetDataSample(metainfo=dict(img_shape=(h, w), pad_shape=(h, w)))
            s.gt_instances = InstanceData(bboxes=torch.tensor([[1., 1., 10., 10.]]), labels=torch.tensor([0]),
                                          masks=BitmapMasks(np.ones((1, h, w), np.uint8), h, w))
            samples.append(s)
        data = dict(inputs=[torch.randint(0, 255, (3, h, w), dtype=torch.uint8) for h, w in shapes],
                    data_samples=samples)
        out = pre(data, training=True)
        assert tuple(out['inputs'].shape[-2:]) == size, shapes
        assert all(tuple(s.batch_input_shape) == size for s in out['data_samples'])
        assert all(s.gt_instances.masks.masks.shape[-2:] == size for s in out['data_samples'])
    # the test pipeline pads to the same frame
    from mmcv.transforms import Compose
    test = Compose([t for t in cfg.test_pipeline if t['type'] in ('Resize', 'PadToFrame')])
    res = test(dict(img=np.zeros((50, 90, 3), np.uint8), img_shape=(50, 90), ori_shape=(50, 90)))
    assert res['img'].shape[:2] == size
    # ...while img_shape stays the image's own extent, so predictions are clipped to the image, not the frame
    # (mmcv's Pad would report the frame, and mmdet's CPU mask pasting fails on boxes wholly in the padding)
    assert tuple(res['pad_shape'][:2]) == size and res['img_shape'][0] < size[0]


def test_simple_fpn_has_no_relu_and_derives_its_widths():
    fpn = SimpleFPN(backbone_channel=64, out_channels=16).eval()
    assert not any(isinstance(m, torch.nn.ReLU) for m in fpn.modules())
    outs = fpn((torch.randn(2, 64, 8, 8), ))
    assert [o.shape[-1] for o in outs] == [32, 16, 8, 4, 2]
    for o in outs:  # LayerNorm output without an activation: about half the values are negative
        assert (o < 0).float().mean() > 0.2
    with pytest.raises(ValueError, match=r'in_channels must be \[16, 32, 64, 64\]'):
        SimpleFPN(backbone_channel=64, in_channels=[32, 64, 128, 128])
    with pytest.raises(ValueError, match='backbone_channel=64.*32-channel'):
        fpn((torch.randn(1, 32, 8, 8), ))


def test_rel_pos_zero_init_is_a_no_op_and_nonzero_changes_the_output():
    torch.manual_seed(0)
    kw = dict(MICRO, layer_scale_init_value=1.0)  # full-strength attention branches (1e-5 would hide any change)
    plain = PosFieldViTDet(**kw).eval()
    rel = PosFieldViTDet(**dict(kw, use_rel_pos=True)).eval()
    missing, unexpected = rel.load_state_dict(plain.state_dict(), strict=False)
    assert sorted(missing) == sorted(rel.rel_pos_names()) and not unexpected
    # windowed block 0: 2 * window - 1 offsets; global block 1: 2 * (img_size / patch) - 1
    assert rel.layers[0].attn.rel_pos_h.shape == (5, 32) and rel.layers[1].attn.rel_pos_w.shape == (11, 32)
    assert all(float(p.abs().sum()) == 0.0 for n, p in rel.named_parameters() if '.rel_pos_' in n)
    x = torch.randn(2, 3, 48, 40)  # grid 6 x 5: not a multiple of the window, global grid != table size
    with torch.no_grad():
        ref, out = plain(x)[0], rel(x)[0]
        assert torch.allclose(out, ref, atol=1e-5)
        for layer in (0, 1):
            rel.layers[layer].attn.rel_pos_h.normal_(std=0.5)
            changed = rel(x)[0]
            assert (changed - ref).abs().max() > 1e-2, layer
            rel.layers[layer].attn.rel_pos_h.zero_()
    rel.train()
    rel(x)[0].pow(2).mean().backward()  # the zero tables still learn
    assert all(float(rel.layers[i].attn.rel_pos_w.grad.abs().sum()) > 0 for i in (0, 1))


def test_detector_blocks_are_vit_blocks_around_the_same_attention():
    """The detector's blocks are ViTBlocks: a global block is the plain ViTBlock (mmpretrain's forward) on the
    flattened map; a windowed block runs mmpretrain's attention module on each zero-padded window."""
    from projects.posfield.det.pos_field_vitdet import window_partition, window_unpartition
    from projects.posfield.models.backbones.vit_block import ViTBlock
    torch.manual_seed(0)
    det = PosFieldViTDet(**dict(MICRO, layer_scale_init_value=1.0)).eval()
    assert all(isinstance(layer, ViTBlock) for layer in det.layers)
    assert [layer.window_size for layer in det.layers] == [3 if i != 1 else 0 for i in range(len(det.layers))]
    x = torch.randn(2, 6, 5, det.embed_dims)  # not a multiple of the window: padded
    with torch.no_grad():
        glob = det.layers[1]
        ref = ViTBlock.forward(glob, x.flatten(1, 2)).view_as(x)
        assert torch.allclose(glob(x), ref, atol=1e-5)
        win = det.layers[0]
        windows, padded = window_partition(win.ln1(x), 3)
        y = x + window_unpartition(win.attn(windows), 3, padded, (6, 5))  # mmpretrain's attention module
        assert torch.allclose(win(x), win.ffn(win.ln2(y), identity=y), atol=1e-5)


def test_decomposed_rel_pos_matches_a_direct_computation():
    from projects.posfield.det.pos_field_vitdet import decomposed_rel_pos_bias
    torch.manual_seed(0)
    h, w, c = 3, 4, 5
    q = torch.randn(2, 1, h * w, c)
    table_h, table_w = torch.randn(2 * h - 1, c), torch.randn(2 * w - 1, c)
    bias = decomposed_rel_pos_bias(q, table_h, table_w, (h, w))
    for (i, j) in [(0, 0), (2, 3), (1, 2)]:
        for (k, m) in [(0, 0), (2, 1), (1, 3)]:
            expect = q[:, 0, i * w + j] @ table_h[i - k + h - 1] + q[:, 0, i * w + j] @ table_w[j - m + w - 1]
            assert torch.allclose(bias[:, 0, i * w + j, k * w + m], expect, atol=1e-5)
    # a table for another grid is resized linearly (ViTDet): 5 offsets (grid 3) serve grid 6 (11 offsets)
    const = get_rel_pos(6, 6, torch.full((5, 2), 3.0))
    assert const.shape == (6, 6, 2) and torch.allclose(const, torch.full_like(const, 3.0))
    ramp = get_rel_pos(6, 6, torch.arange(5.).view(5, 1))[..., 0]
    assert torch.all(ramp[:, :-1] >= ramp[:, 1:])  # the offset i - k grows to the left: still monotone


def test_rel_pos_is_initialised_at_fine_tuning_and_everything_else_must_be_covered(tmp_path):
    plain = PosFieldViTDet(**MICRO)
    state = {k: v + 0.01 for k, v in plain.state_dict().items()}
    path = tmp_path / 'backbone.pth'
    torch.save(dict(state_dict=state), path)
    rel = PosFieldViTDet(**dict(MICRO, use_rel_pos=True, init_cfg=dict(type='Pretrained', checkpoint=str(path))))
    rel.init_weights()
    for name, value in rel.state_dict().items():
        if '.rel_pos_' in name:
            assert float(value.abs().sum()) == 0.0
        else:
            assert torch.equal(value, state[name]), name
    del state['layers.1.attn.proj.weight']
    torch.save(dict(state_dict=state), path)
    with pytest.raises(CheckpointMismatchError, match='missing in checkpoint.*layers.1.attn.proj.weight'):
        PosFieldViTDet(**dict(MICRO, use_rel_pos=True, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
                       ).init_weights()


def test_field_size_none_takes_the_checkpoints_and_needs_one(tmp_path):
    src = PosFieldViTDet(**dict(MICRO, pos_field=dict(field_size=(5, 7))))
    path = tmp_path / 'bb.pth'
    torch.save(dict(state_dict=src.state_dict()), path)
    bb = PosFieldViTDet(**dict(MICRO, pos_field=dict(field_size=None),
                               init_cfg=dict(type='Pretrained', checkpoint=str(path))))
    assert bb.pos_field.field_size == (5, 7)
    bb.init_weights()
    assert torch.equal(bb.pos_field.field, src.pos_field.field)
    with pytest.raises(ValueError, match='field_size=None.*init_cfg names none'):
        PosFieldViTDet(**dict(MICRO, pos_field=dict(field_size=None)))
    # without the file (building a detector to test it): default size, then the loaded detector's size
    later = PosFieldViTDet(**dict(MICRO, pos_field=dict(field_size=None),
                                  init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'absent.pth'))))
    assert later.pos_field.field_size == (50, 50)
    later.load_state_dict(src.state_dict())
    assert later.pos_field.field_size == (5, 7) and torch.equal(later.pos_field.field, src.pos_field.field)
    with pytest.raises(FileNotFoundError, match='absent.pth'):
        later.init_weights()  # training still needs the pre-trained file
    fixed = PosFieldViTDet(**dict(MICRO, pos_field=dict(field_size=8)))
    with pytest.raises(RuntimeError, match='size mismatch.*pos_field.field'):
        fixed.load_state_dict(src.state_dict())  # an explicit size is kept
    plain = {k: v for k, v in src.state_dict().items() if not k.startswith('pos_field')}
    torch.save(plain, tmp_path / 'plain.pth')
    with pytest.raises(CheckpointMismatchError, match="no position field.*pos_embed_type='interpolate'"):
        PosFieldViTDet(**dict(MICRO, pos_field=dict(field_size=None),
                              init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'plain.pth'))))


def test_field19_backbone_file_fine_tunes_with_the_default_detection_config(tmp_path):
    """The field-19 ablation's backbone loads into the paper's detection config unchanged, with full coverage."""
    from mmdet.registry import MODELS
    init_default_scope('mmdet')
    cfg = _cfg('ViT-B')
    assert cfg.model.backbone.pos_field.field_size is None
    src_cfg = dict(cfg.model.backbone, pos_field=dict(field_size=19), use_rel_pos=False, init_cfg=None)
    src = MODELS.build(src_cfg)
    path = tmp_path / 'field19_backbone.pth'
    torch.save(dict(state_dict=src.state_dict()), path)
    bb_cfg = cfg.model.backbone
    bb_cfg.init_cfg.checkpoint = str(path)
    bb = MODELS.build(bb_cfg)
    assert bb.pos_field.field_size == (19, 19)
    bb.init_weights()  # raises on any uncovered tensor other than the relative position tables
    assert torch.equal(bb.pos_field.field, src.pos_field.field)
    assert torch.equal(bb.layers[11].ffn.layers[1].weight, src.layers[11].ffn.layers[1].weight)
