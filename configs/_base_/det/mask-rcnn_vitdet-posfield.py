# ViTDet-style Mask R-CNN (method.md section 3) over mmdet's own Mask R-CNN: plain ViT-B/16 with windowed
# attention (window 14, global blocks 2, 5, 8, 11) and field-sampled positions, simple feature pyramid,
# 2-conv RPN, 4conv1fc box head and mask head with LayerNorm.
_base_ = ['mmdet::_base_/models/mask-rcnn_r50_fpn.py']
custom_imports = dict(imports=['projects.posfield.det'], allow_failed_imports=False)
norm_cfg = dict(type='LN2d', requires_grad=True)
model = dict(
    data_preprocessor=dict(pad_size_divisor=32),
    backbone=dict(
        _delete_=True,
        type='PosFieldViTDet',
        arch='base',
        patch_size=16,
        window_size=14,
        global_attn_indexes=(2, 5, 8, 11),
        pos_embed_type='field',
        pos_field=dict(field_size=50),
        placement='whole',
        drop_path_rate=0.1,
        # the pre-trained checkpoint: teacher by default; every backbone tensor must be covered
        init_cfg=dict(type='Pretrained', checkpoint='work_dirs/pretrain/latest_teacher_backbone.pth',
                      key='teacher')),
    neck=dict(_delete_=True, type='SimpleFPN', backbone_channel=768, in_channels=[192, 384, 768, 768],
              out_channels=256, num_outs=5, norm_cfg=norm_cfg),
    rpn_head=dict(num_convs=2),
    roi_head=dict(
        bbox_head=dict(type='Shared4Conv1FCBBoxHead', conv_out_channels=256, norm_cfg=norm_cfg),
        mask_head=dict(norm_cfg=norm_cfg)),
)
