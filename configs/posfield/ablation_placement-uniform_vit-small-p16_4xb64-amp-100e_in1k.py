# Ablation: canvas placement 'uniform' (side s ~ U(0, 1)) instead of Beta(2,5).
_base_ = ['./posfield_vit-small-p16_4xb64-amp-100e_in1k.py']
train_dataloader = dict(collate_fn=dict(placement=dict(mode='uniform', scale_range=(0.0, 1.0))))
