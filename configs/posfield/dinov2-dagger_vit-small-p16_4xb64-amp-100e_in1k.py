# Baseline "DINOv2-dagger": the same code with both additions off - an ordinary interpolated position
# embedding (no field, boxes ignored) and content masking only (content_ratio=1).
_base_ = ['./posfield_vit-small-p16_4xb64-amp-100e_in1k.py']
model = dict(backbone=dict(pos_embed_type='interpolate', pos_field=None))
train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadRGBImage', on_error='skip'),
    dict(type='PosFieldMultiCrop', placement=dict(mode='const')),
    dict(type='PosFieldMaskGenerator', patch_size=16, content_ratio=1.0),
    dict(type='PackInputs', algorithm_keys=['view_boxes', 'view_flips', 'content_masks', 'pos_masks'],
         meta_keys=['img_path']),
]))
