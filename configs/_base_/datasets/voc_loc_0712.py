# Pascal VOC for classify-and-localise: train on VOC2007 + VOC2012 trainval, evaluate on VOC2007 test.
# One target per image (its largest non-difficult object). Layout: data/VOCdevkit/VOC20{07,12}/ with
# JPEGImages/, Annotations/, ImageSets/Main/ (see docs/localization.md).
# Fewer labels: train_dataloader.dataset.label_fraction (class-stratified, nested, fixed subset_seed).
dataset_type = 'VOCLocalizationDataset'
data_root = 'data/VOCdevkit/'
img_size = 224
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='BoxPreservingRandomCrop', min_scale=0.6, prob=0.5),  # never cuts the target box
    dict(type='Resize', scale=(img_size, img_size), keep_ratio=False),  # mmcv's: rescales gt_bboxes
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),  # mmcv's: mirrors gt_bboxes
    dict(type='RandomApply',
         transforms=[dict(type='HueSafeColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)], prob=0.5),
    dict(type='PackInputs', algorithm_keys=['gt_bboxes', 'ori_gt_bboxes']),
]
# resize only: ClsLocHead maps its box back to the original image with scale_factor
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(img_size, img_size), keep_ratio=False),
    dict(type='PackInputs', algorithm_keys=['gt_bboxes', 'ori_gt_bboxes']),
]
train_dataloader = dict(
    batch_size=32,
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        sources=[dict(data_root='VOC2007', split='trainval'), dict(data_root='VOC2012', split='trainval')],
        label_fraction=1.0,
        subset_seed=0,
        pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=64,
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, sources=[dict(data_root='VOC2007', split='test')],
                 pipeline=test_pipeline, test_mode=True),
)
val_evaluator = dict(type='LocalizationMetric', topk=(1, 3), iou_thrs=(0.5, 0.7))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
