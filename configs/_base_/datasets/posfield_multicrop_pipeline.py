# The pre-training pipeline (docs/design.md contract 2): 2 global 224 px + 8 local 96 px crops with
# canvas boxes and flips, then content / position masks for the global views.
train_pipeline = [
    dict(type='LoadRGBImage', on_error='skip'),
    dict(type='PosFieldMultiCrop', global_crops_number=2, global_crops_size=224, global_crops_scale=(0.32, 1.0),
         local_crops_number=8, local_crops_size=96, local_crops_scale=(0.05, 0.32),
         placement=dict(mode='beta', beta=(2.0, 5.0))),
    dict(type='PosFieldMaskGenerator', patch_size=16, mask_prob=0.5, ratio_range=(0.1, 0.5), content_ratio=0.5,
         content_mode='block', pos_mode='cross'),
    dict(type='PackInputs', algorithm_keys=['view_boxes', 'view_flips', 'content_masks', 'pos_masks'],
         meta_keys=['img_path']),
]
