# LARS, lr = 0.3 x total batch / 256 (SimCLR), 10 warm-up epochs then cosine; 8 GPUs x 64 = 512 images.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='LARS', lr=0.6, momentum=0.9, weight_decay=1e-6),
    # no decay and no LARS scaling for norms and biases (EfficientNet's ConvModules name their BN "bn")
    paramwise_cfg=dict(custom_keys={
        'bn': dict(decay_mult=0, lars_exclude=True),
        'bias': dict(decay_mult=0, lars_exclude=True),
    }))
max_epochs = 200
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=10, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - 10, by_epoch=True, begin=10, end=max_epochs),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
auto_scale_lr = dict(base_batch_size=512)
