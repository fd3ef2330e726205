# Ablation: canvas placement 'const' instead of Beta(2,5) (the image's longer edge spans the whole canvas).
_base_ = ['./posfield_vit-small-p16_4xb64-amp-100e_in1k.py']
train_dataloader = dict(collate_fn=dict(placement=dict(mode='const')))
