# Ablation: canvas placement 'uniform' instead of Beta(2,5) ('const': the image spans the whole canvas).
_base_ = ['./posfield_vit-small-p16_4xb64-amp-100e_in1k.py']
train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadRGBImage', on_error='skip'),
    dict(type='PosFieldMultiCrop', placement=dict(mode='uniform', scale_range=(0.0, 1.0))),
    dict(type='PosFieldMaskGenerator', patch_size=16),
    dict(type='PackInputs', algorithm_keys=['view_boxes', 'view_flips', 'content_masks', 'pos_masks'],
         meta_keys=['img_path']),
]))
