"""A checkpoint of each pre-training architecture loads into its detection config with full coverage."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from projects.posfield.models.utils.archs import vit_arch
from tests.helpers import ROOT

PAIRS = [  # (paper arch, pre-training config, detection config)
    ('ViT-S', 'configs/posfield/posfield_vit-small-p16_4xb64-amp-100e_in1k.py',
     'configs/mask_rcnn/mask-rcnn_vit-s-p16-posfield_lsj-1024-12e_coco.py'),
    ('ViT-B', 'configs/posfield/posfield_vit-base-p16_8xb64-amp-100e_in1k.py',
     'configs/mask_rcnn/mask-rcnn_vit-b-p16-posfield_lsj-1024-12e_coco.py'),
    ('ViT-S', 'configs/posfield/ablation_field19_vit-small-p16_4xb64-amp-100e_in1k.py',
     'configs/mask_rcnn/mask-rcnn_vit-s-p16-posfield_lsj-1024-12e_coco.py'),
]


def _pretrain_model(config, arch):
    from mmpretrain.registry import MODELS

    import projects.posfield  # noqa: F401
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(osp.join(ROOT, config))
    # The backbone by its table entry (the pre-training backbone takes the same name or dict), and a small
    # prototype layer: the heads are not part of what the detector loads, and 65536 prototypes cost memory only.
    cfg.model.backbone.arch = vit_arch(arch)
    cfg.model.neck.in_channels = vit_arch(arch)['embed_dims']
    cfg.model.neck.num_prototypes = 256
    for head in ('cls_head', 'head'):
        cfg.model[head].loss.out_dim = 256
    model = MODELS.build(cfg.model)
    model.init_weights()
    with torch.no_grad():  # teacher != student, so loading the wrong one would show
        for p in model.backbone.parameters():
            p.add_(0.01)
    return cfg, model


@pytest.mark.parametrize('arch,pretrain,det', PAIRS, ids=['vit-s', 'vit-b', 'vit-s-field19'])
def test_pretraining_checkpoint_loads_into_its_detection_config(tmp_path, arch, pretrain, det):
    pre_cfg, model = _pretrain_model(pretrain, arch)
    path = tmp_path / 'pretrain.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict(iter=1)), path)
    teacher = model.teacher.module['backbone'].state_dict()
    del model
    from mmdet.registry import MODELS

    import projects.posfield.det  # noqa: F401
    init_default_scope('mmdet')
    cfg = Config.fromfile(osp.join(ROOT, det))
    cfg.model.backbone.init_cfg.checkpoint = str(path)
    backbone = MODELS.build(cfg.model.backbone)
    assert cfg.model.neck.backbone_channel == backbone.embed_dims == vit_arch(arch)['embed_dims']
    field = pre_cfg.model.backbone.pos_field.field_size
    assert backbone.pos_field.field_size == (field, field)  # 50, or 19 for the ablation: from the checkpoint
    backbone.init_weights()  # CheckpointMismatchError on any tensor not covered (the rel-pos tables excepted)
    state = backbone.state_dict()
    loaded = [k for k in state if '.rel_pos_' not in k]
    assert len(loaded) == len([k for k in teacher if k not in ('cls_token', 'cls_pos', 'mask_token',
                                                                'pos_mask_token')])
    for name in loaded:
        assert torch.equal(state[name], teacher[name]), name
