# Ablation: a 19 x 19 position field instead of 50 x 50.
_base_ = ['./posfield_vit-small-p16_4xb64-amp-100e_in1k.py']
model = dict(backbone=dict(pos_field=dict(field_size=19)))
