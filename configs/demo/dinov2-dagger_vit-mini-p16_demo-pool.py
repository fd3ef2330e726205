# Default job, optional third row: the DINOv2-dagger baseline (configs/_base_/models/dinov2-dagger.py) with the
# same backbone, data and schedule as posfield_vit-mini-p16_demo-pool.py.
_base_ = ['./posfield_vit-mini-p16_demo-pool.py', '../_base_/models/dinov2-dagger.py']
model = {{_base_.dinov2_dagger}}
train_dataloader = {{_base_.dinov2_dagger_data}}
