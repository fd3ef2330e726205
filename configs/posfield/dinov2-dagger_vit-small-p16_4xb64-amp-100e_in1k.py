# Baseline "DINOv2-dagger" at the paper's ViT-S/16 setting (configs/_base_/models/dinov2-dagger.py).
_base_ = ['./posfield_vit-small-p16_4xb64-amp-100e_in1k.py', '../_base_/models/dinov2-dagger.py']
model = {{_base_.dinov2_dagger}}
train_dataloader = {{_base_.dinov2_dagger_data}}
