# Ablation "crop-aligned positions only" (= content:position 100:0): the field with Beta(2,5) placement,
# content masking only, no position masking.
_base_ = ['./posfield_vit-small-p16_4xb64-amp-100e_in1k.py']
train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadRGBImage', on_error='skip'),
    dict(type='PosFieldMultiCrop'),
    dict(type='PosFieldMaskGenerator', patch_size=16, content_ratio=1.0),
    dict(type='PackInputs', algorithm_keys=['view_boxes', 'view_flips', 'content_masks', 'pos_masks'],
         meta_keys=['img_path']),
]))
