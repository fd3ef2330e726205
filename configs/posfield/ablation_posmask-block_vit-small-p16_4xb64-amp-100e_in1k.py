# Ablation: box-wise (block) position masks instead of cross-wise.
_base_ = ['./posfield_vit-small-p16_4xb64-amp-100e_in1k.py']
train_dataloader = dict(collate_fn=dict(masking=dict(pos_mode='block')))
