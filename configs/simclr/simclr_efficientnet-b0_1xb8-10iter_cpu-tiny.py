# A tiny CPU run (seconds per iteration) for tests and trying changes: EfficientNet-B0 on 64 px views.
#   python tools/train.py configs/simclr/simclr_efficientnet-b0_1xb8-10iter_cpu-tiny.py \
#       --cfg-options train_dataloader.dataset.data_root=/path/to/images
_base_ = [
    '../_base_/models/simclr_efficientnet-b1.py',
    '../_base_/datasets/simclr_unlabeled_folder.py',
    '../_base_/simclr_loc_runtime.py',
]
model = dict(backbone=dict(arch='b0', norm_cfg=dict(type='BN', eps=1e-3)),
             neck=dict(hid_channels=256, out_channels=64, norm_cfg=dict(type='BN1d')))
view_pipeline = [
    dict(type='RandomResizedCrop', scale=64, backend='pillow'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomApply',
         transforms=[dict(type='HueSafeColorJitter', brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2)],
         prob=0.8),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True, channel_weights=(0.114, 0.587, 0.2989)),
    dict(type='GaussianBlur', magnitude_range=(0.1, 2.0), magnitude_std='inf', prob=0.5),
]
train_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False, pin_memory=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(pipeline=[
        dict(type='LoadRGBImage', on_error='skip'),
        dict(type='MultiView', num_views=2, transforms=[view_pipeline]),
        dict(type='PackInputs'),
    ]))
max_iters = 10
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3, weight_decay=1e-4),
                     paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0))
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=3)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
