# mmpretrain's SimCLR on its EfficientNet. EfficientNet returns one map (B, C, h, w) for out_indices=(6,);
# NonLinearNeck pools it (with_avg_pool=True) and asserts a single input, so out_indices must hold one
# stage. C is 1280 for b0/b1 (width 1.0), 1408 for b2, 1536 for b3: neck in_channels must follow the arch.
model = dict(
    type='SimCLR',
    data_preprocessor=dict(type='SelfSupDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], to_rgb=True),
    # SyncBN: per-GPU batch statistics let SimCLR cheat through BN (mmengine reverts it to BN on 1 process)
    backbone=dict(type='EfficientNet', arch='b1', out_indices=(6, ), norm_cfg=dict(type='SyncBN', eps=1e-3)),
    neck=dict(type='NonLinearNeck', in_channels=1280, hid_channels=1280, out_channels=128, num_layers=2,
              with_avg_pool=True, norm_cfg=dict(type='SyncBN')),
    head=dict(type='ContrastiveHead', loss=dict(type='CrossEntropyLoss'), temperature=0.1),
)
