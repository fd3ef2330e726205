# COCO 2017 instance segmentation with large-scale jitter at 1024 px (scale 0.1-2.0), AdamW lr 1e-4, wd 0.1,
# layer decay 0.7, AMP; 12 epochs at batch 64 = 22,100 iterations (118k images), warm-up 250 iterations,
# lr x0.1 at ~89% and ~96% of training (docs/posfield.md, "Detection (ViTDet)").
_base_ = ['mmdet::_base_/default_runtime.py']
dataset_type = 'CheckedCocoDataset'  # mmdet's CocoDataset + annotation checks (projects/common/coco.py)
data_root = 'data/coco/'
image_size = (1024, 1024)
max_iters = 22100
backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.1, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_type='absolute_range', crop_size=image_size, recompute_bbox=True,
         allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-2, 1e-2)),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
# Test images are padded to the model's fixed frame (training batches: the model's BatchFixedSizePad) with the
# mean colour (BGR, as loaded), which is what BatchFixedSizePad's 0 after normalisation is.
mean_bgr = (104, 116, 124)
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='PadToFrame', size=image_size, pad_val=dict(img=mean_bgr)),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=8,  # x 8 GPUs = 64
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='annotations/instances_train2017.json',
                 data_prefix=dict(img='train2017/'), filter_cfg=dict(filter_empty_gt=True, min_size=32),
                 pipeline=train_pipeline, backend_args=backend_args))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='annotations/instances_val2017.json',
                 data_prefix=dict(img='val2017/'), test_mode=True, pipeline=test_pipeline,
                 backend_args=backend_args))
test_dataloader = val_dataloader
val_evaluator = dict(type='CheckedCocoMetric', ann_file=data_root + 'annotations/instances_val2017.json',
                     metric=['bbox', 'segm'], format_only=False, backend_args=backend_args)
test_evaluator = val_evaluator

optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    constructor='ViTLayerDecayOptimWrapperConstructor',
    # no weight decay on 1-D parameters (norms, biases, layer scales) nor on the positions (ViTDet / MAE recipe)
    paramwise_cfg=dict(layer_decay_rate=0.7, flat_decay_mult=0.0,
                       custom_keys={'.pos_field.': dict(decay_mult=0.0), '.pos_embed': dict(decay_mult=0.0)}),
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=250),
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False,
         milestones=[int(max_iters * 0.889), int(max_iters * 0.963)], gamma=0.1),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=2000, max_keep_ckpts=3),
                     non_finite_loss=dict(type='NonFiniteLossHook'))  # stop at a NaN/Inf loss
log_processor = dict(by_epoch=False)
auto_scale_lr = dict(base_batch_size=64)
