# A tiny CPU run (seconds) for tests and trying changes: EfficientNet-B0, 64 px, a VOC-format folder with
# ImageSets/Main/{train,val}.txt:
#   python tools/train.py configs/localization/clsloc_efficientnet-b0_1xb4-6iter_cpu-tiny.py \
#       --cfg-options train_dataloader.dataset.data_root=DIR val_dataloader.dataset.data_root=DIR \
#       test_dataloader.dataset.data_root=DIR
_base_ = [
    '../_base_/models/voc_loc_efficientnet-b1.py',
    '../_base_/simclr_loc_runtime.py',
]
data_root = 'data/voc_tiny/'
img_size = 64
model = dict(backbone=dict(arch='b0'), head=dict(box_hidden_channels=32, dropout=0.0), init='random',
             init_checkpoint=None)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='BoxPreservingRandomCrop', min_scale=0.6, prob=0.5),
    dict(type='Resize', scale=(img_size, img_size), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs', algorithm_keys=['gt_bboxes', 'ori_gt_bboxes']),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(img_size, img_size), keep_ratio=False),
    dict(type='PackInputs', algorithm_keys=['gt_bboxes', 'ori_gt_bboxes']),
]
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='VOCLocalizationDataset', data_root=data_root, split='train', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='VOCLocalizationDataset', data_root=data_root, split='val', pipeline=test_pipeline,
                 test_mode=True))
val_evaluator = dict(type='LocalizationMetric', topk=(1, 3), iou_thrs=(0.5, 0.7))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
max_iters = 6
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
                     paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0))
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict()
test_cfg = dict()
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
