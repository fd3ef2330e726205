# Classify-and-localise on the offline VOC-layout set (tools/data/prepare_voc_loc.py: real DeepForest trees +
# synthetic composition of shapes on real photos), EfficientNet-Lite0 from random weights, 96 px inputs
# (128 px images), 2 CPU cores.
# Stage 2 of tools/run_localization_job.py; the SimCLR and ImageNet-Lite0 configs change only model.init.
#   python tools/train.py configs/localization/clsloc_efficientnet-lite0_random-init_1xb16-40iter_demo-voc.py \
#       --cfg-options train_dataloader.dataset.label_fraction=0.1
_base_ = [
    '../_base_/models/voc_loc_efficientnet-b1.py',
    '../_base_/datasets/voc_loc_0712.py',
    '../_base_/simclr_loc_runtime.py',
]
data_root = 'data/voc_loc/'
classes = ('tree', 'ellipse', 'rectangle', 'triangle', 'star', 'cross', 'crescent')
img_size = 96
# the ImageNet Lite0 weights expect RGB scaled as (x / 255 - 0.5) / 0.5; every initialisation uses it.
# BN momentum 0.1 (the package's 0.01 leaves the running statistics of random / SimCLR weights near their
# initial values after this short schedule, and the test would use them)
model = dict(
    data_preprocessor=dict(num_classes=len(classes), mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5]),
    backbone=dict(_delete_=True, type='EfficientNetLite', arch='lite0', bn_momentum=0.1),
    head=dict(num_classes=len(classes)),
    init='random',
    init_checkpoint=None)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='BoxPreservingRandomCrop', min_scale=0.6, prob=0.5),
    dict(type='Resize', scale=(img_size, img_size), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandomApply',
         transforms=[dict(type='HueSafeColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)], prob=0.5),
    dict(type='PackInputs', algorithm_keys=['gt_bboxes', 'ori_gt_bboxes']),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(img_size, img_size), keep_ratio=False),
    dict(type='PackInputs', algorithm_keys=['gt_bboxes', 'ori_gt_bboxes']),
]
train_dataloader = dict(
    batch_size=16, num_workers=2, persistent_workers=True, pin_memory=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(data_root=data_root, sources=None, split='trainval', classes=classes, pipeline=train_pipeline))
test_dataloader = dict(
    batch_size=64, num_workers=2, persistent_workers=False, pin_memory=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='VOCLocalizationDataset', data_root=data_root, sources=None, split='test', classes=classes,
                 pipeline=test_pipeline, test_mode=True))
max_iters = 40
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
    clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=max_iters // 10),
    dict(type='CosineAnnealingLR', T_max=max_iters - max_iters // 10, by_epoch=False, begin=max_iters // 10,
         end=max_iters),
]
# no validation split: the last checkpoint is scored once by tools/test.py (the test split never picks one)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)
val_dataloader = None
val_evaluator = None
val_cfg = None
test_cfg = dict()
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1, save_last=True))
log_processor = dict(by_epoch=False)
