# Ablation content:position 0:100 - every masked image is position-masked (100:0 is the crop-aligned-only config).
_base_ = ['./posfield_vit-small-p16_4xb64-amp-100e_in1k.py']
train_dataloader = dict(collate_fn=dict(masking=dict(content_ratio=0.0)))
