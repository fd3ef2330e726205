# Default job, stage 2: Mask R-CNN with the demo backbone (192-d, 6 blocks, patch 16, window 8, global blocks
# 2 and 5) on the demo COCO-format set (synthetic shapes composed on real photos), 256 px, on the CPU.
# The backbone is initialised from the pre-trained teacher (init_cfg) or randomly (init_cfg=None).
_base_ = ['../mask_rcnn/mask-rcnn_vit-tiny-p16-posfield_cpu-smoke_coco-format.py']
data_root = 'data/demo/coco/'
image_size = (256, 256)
max_iters = 600
ch = 64
model = dict(
    data_preprocessor=dict(batch_augments=[dict(type='BatchFixedSizePad', size=image_size, pad_mask=True)]),
    backbone=dict(arch='ViT-mini', window_size=8, global_attn_indexes=(2, 5), img_size=image_size[0],
                  pos_field=dict(field_size=16), drop_path_rate=0.1,  # 16: also for the random-init run
                  layer_scale_init_value=1.0,  # the random-init run starts like the demo pre-training's backbone
                  init_cfg=dict(_delete_=True, type='Pretrained',
                                checkpoint='work_dirs/default_job/seed_0/pretrain_posfield/backbone.pth')),
    neck=dict(backbone_channel=192, out_channels=ch),
    rpn_head=dict(in_channels=ch, feat_channels=ch),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=ch),
        bbox_head=dict(in_channels=ch, conv_out_channels=ch, fc_out_channels=256),
        mask_roi_extractor=dict(out_channels=ch),
        mask_head=dict(in_channels=ch, conv_out_channels=ch)),
)
# Restated, not inherited: the base's pipelines were evaluated with its own image_size.
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
train_dataloader = dict(batch_size=4, num_workers=2, persistent_workers=True,
                        dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
optim_wrapper = dict(optimizer=dict(lr=4e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False,
         milestones=[int(max_iters * 0.889), int(max_iters * 0.963)], gamma=0.1),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(logger=dict(interval=20), checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
# A fixed seed: reruns of the default job give the same detector for the same backbone, so the table compares
# initialisations, not draws (mmdet's runtime leaves the seed random).
randomness = dict(seed=0)
