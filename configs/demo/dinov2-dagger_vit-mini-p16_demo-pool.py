# Default job, optional third row: the DINOv2-dagger baseline (interpolated position embedding, content masking
# only) with the same backbone, data and schedule as posfield_vit-mini-p16_demo-pool.py.
_base_ = ['./posfield_vit-mini-p16_demo-pool.py']
model = dict(backbone=dict(pos_embed_type='interpolate', pos_field=None))
train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadRGBImage', on_error='skip'),
    dict(type='PosFieldMultiCrop', global_crops_size=96, global_crops_scale=(0.25, 1.0), local_crops_number=4,
         local_crops_size=48, local_crops_scale=(0.05, 0.25), placement=dict(mode='const')),
    dict(type='PosFieldMaskGenerator', patch_size=16, content_ratio=1.0),
    dict(type='PackInputs', algorithm_keys=['view_boxes', 'view_flips', 'content_masks', 'pos_masks'],
         meta_keys=['img_path']),
]))
