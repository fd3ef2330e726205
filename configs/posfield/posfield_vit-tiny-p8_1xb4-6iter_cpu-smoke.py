# A tiny CPU config (seconds per iteration): tests, the smoke default job, and trying changes.
#   python tools/train.py configs/posfield/posfield_vit-tiny-p8_1xb4-6iter_cpu-smoke.py \
#       --cfg-options train_dataloader.dataset.data_root=/path/to/images
_base_ = [
    '../_base_/models/posfield_vit-small-p16.py',
    '../_base_/datasets/unlabeled_folder_posfield.py',
    '../_base_/posfield_runtime.py',
]
num_prototypes = 256
model = dict(
    backbone=dict(arch='ViT-micro', patch_size=8, img_size=64, pos_field=dict(field_size=8), drop_path_rate=0.0),
    neck=dict(hidden_channels=128, bottleneck_channels=32, num_prototypes=num_prototypes),
    cls_head=dict(loss=dict(out_dim=num_prototypes)),
    head=dict(loss=dict(out_dim=num_prototypes)),
    # On a CPU the photometric augmentation stays in the workers (PosFieldMultiCrop's default): batched on the
    # device it pays off on a GPU, while on a CPU its element-wise passes cost more than the workers' per-view ops.
    data_preprocessor=dict(photometric=None),
    teacher_temp_warmup_epochs=0.5,  # an "epoch" of an iteration-based loop is the whole run
    freeze_prototypes_epochs=0.34,
)
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False, pin_memory=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(patch_size=8),  # the backbone's
    dataset=dict(pipeline=[  # the base pipeline at 64 / 32 px with 2 local crops (lists cannot be merged)
        dict(type='LoadRGBImage', on_error='skip'),
        dict(type='PosFieldMultiCrop', global_crops_size=64, local_crops_number=2, local_crops_size=32),
        dict(type='PackInputs', algorithm_keys=['crop_boxes', 'view_flips', 'source_hw'], meta_keys=['img_path']),
    ]))
max_iters = 6
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=5e-4, betas=(0.9, 0.999), weight_decay=0.04),
    clip_grad=dict(max_norm=3.0, per_module=True),
    constructor='ViTLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.9, patch_embed_lr_mult=0.2, norm_decay_mult=0.0, flat_decay_mult=0.0),
)
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2)]
train_cfg = dict(type='ResumableIterBasedTrainLoop', max_iters=max_iters)  # exact resume (engine/resume.py)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(by_epoch=False, interval=3, max_keep_ckpts=2))
log_processor = dict(by_epoch=False)
