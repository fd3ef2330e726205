# A tiny Mask R-CNN that trains and tests on the CPU in seconds per iteration, on any small COCO-format set:
#   python tools/train.py THIS_CONFIG --cfg-options train_dataloader.dataset.data_root=D/ \
#       val_dataloader.dataset.data_root=D/ val_evaluator.ann_file=D/annotations/instances_val.json
# The backbone is the ViT-micro of configs/posfield/posfield_vit-tiny-p8_1xb4-6iter_cpu-smoke.py with patch 16;
# the input frame is image_size.
_base_ = ['../_base_/det/mask-rcnn_vitdet-posfield.py', '../_base_/det/coco-instance_lsj-1024_12e.py']
data_root = 'data/demo/coco/'
classes = ('ellipse', 'rectangle', 'triangle')
image_size = (128, 128)
max_iters = 4
norm_cfg = dict(type='LN2d', requires_grad=True)
ch = 32
model = dict(
    data_preprocessor=dict(batch_augments=[dict(type='BatchFixedSizePad', size=image_size, pad_mask=True)]),
    backbone=dict(arch='ViT-micro', window_size=4, global_attn_indexes=(1, ), img_size=image_size[0],
                  pos_field=dict(field_size=8), drop_path_rate=0.0, init_cfg=None),
    neck=dict(backbone_channel=64, out_channels=ch),
    rpn_head=dict(in_channels=ch, feat_channels=ch),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=ch),
        bbox_head=dict(in_channels=ch, conv_out_channels=ch, fc_out_channels=64, num_classes=len(classes)),
        mask_roi_extractor=dict(out_channels=ch),
        mask_head=dict(in_channels=ch, conv_out_channels=ch, num_classes=len(classes))),
    train_cfg=dict(rpn_proposal=dict(nms_pre=200, max_per_img=100), rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=100), rcnn=dict(max_per_img=20)),
)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.5, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_type='absolute_range', crop_size=image_size, recompute_bbox=True,
         allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-2, 1e-2)),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='PadToFrame', size=image_size, pad_val=dict(img={{_base_.mean_bgr}})),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, ann_file='annotations/instances_train.json', data_prefix=dict(img='train/'),
                 metainfo=dict(classes=classes), filter_cfg=dict(filter_empty_gt=True, min_size=4),
                 pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, ann_file='annotations/instances_val.json', data_prefix=dict(img='val/'),
                 metainfo=dict(classes=classes), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
optim_wrapper = dict(_delete_=True, type='OptimWrapper', constructor='ViTLayerDecayOptimWrapperConstructor',
                     paramwise_cfg={{_base_.optim_wrapper.paramwise_cfg}},
                     optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.1))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2),
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False, milestones=[max_iters], gamma=0.1),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=max_iters))
