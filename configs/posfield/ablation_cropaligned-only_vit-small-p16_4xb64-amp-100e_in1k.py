# Ablation "crop-aligned positions only" (= content:position 100:0): the field with Beta(2,5) placement,
# content masking only, no position masking.
_base_ = ['./posfield_vit-small-p16_4xb64-amp-100e_in1k.py']
train_dataloader = dict(collate_fn=dict(masking=dict(content_ratio=1.0)))
