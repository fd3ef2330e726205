# The paper's ViT-S/16 setting: ImageNet-1K, 100 epochs, 4 GPUs x 64 images.
_base_ = [
    '../_base_/models/posfield_vit-small-p16.py',
    '../_base_/datasets/imagenet_posfield.py',
    '../_base_/schedules/posfield_adamw_100e.py',
    '../_base_/posfield_runtime.py',
]
