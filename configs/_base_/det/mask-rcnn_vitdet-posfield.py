# ViTDet-style Mask R-CNN (docs/posfield.md, "Detection (ViTDet)") over mmdet's own Mask R-CNN: plain ViT-B/16
# with windowed attention (window 14, global blocks 2, 5, 8, 11), ViTDet's zero-initialised relative position
# bias and field-sampled positions (field size from the checkpoint), simple feature pyramid (conv + LayerNorm),
# 2-conv RPN, 4conv1fc box head and mask head with LayerNorm.
_base_ = ['mmdet::_base_/models/mask-rcnn_r50_fpn.py']
custom_imports = dict(imports=['projects.posfield.det'], allow_failed_imports=False)
norm_cfg = dict(type='LN2d', requires_grad=True)
# ViTDet's fixed square input frame: every training batch is padded to it (BatchFixedSizePad), and the data
# config pads test images to the same size, so the whole-canvas position field always spans the same frame.
input_size = 1024
model = dict(
    data_preprocessor=dict(pad_size_divisor=32, batch_augments=[
        dict(type='BatchFixedSizePad', size=(input_size, input_size), pad_mask=True)]),
    backbone=dict(
        _delete_=True,
        type='PosFieldViTDet',
        arch='ViT-B',
        patch_size=16,
        window_size=14,
        global_attn_indexes=(2, 5, 8, 11),
        pos_embed_type='field',
        pos_field=dict(field_size=None),  # None: the pre-trained field's size (50, or 19 for its ablation)
        placement='whole',
        use_rel_pos=True,
        img_size=input_size,  # sizes the global blocks' relative position tables
        drop_path_rate=0.1,
        # the pre-trained checkpoint: teacher by default; every backbone tensor must be covered
        init_cfg=dict(type='Pretrained', checkpoint='work_dirs/pretrain/latest_teacher_backbone.pth',
                      key='teacher')),
    neck=dict(_delete_=True, type='SimpleFPN', backbone_channel=768, out_channels=256, num_outs=5,
              norm_cfg=norm_cfg),  # backbone_channel: the arch's embed_dims
    rpn_head=dict(num_convs=2),
    roi_head=dict(
        bbox_head=dict(type='Shared4Conv1FCBBoxHead', conv_out_channels=256, norm_cfg=norm_cfg),
        mask_head=dict(norm_cfg=norm_cfg)),
)
