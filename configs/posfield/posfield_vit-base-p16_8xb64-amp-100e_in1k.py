# The paper's main ViT-B/16 setting: ImageNet-1K, 100 epochs, 8 GPUs x 64 images (lr for batch 512).
_base_ = ['./posfield_vit-small-p16_4xb64-amp-100e_in1k.py']
model = dict(backbone=dict(arch='ViT-B'))
optim_wrapper = dict(optimizer=dict(lr=0.004 * (512 / 1024) ** 0.5))
