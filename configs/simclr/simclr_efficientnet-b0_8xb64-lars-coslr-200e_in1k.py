# EfficientNet-B0 instead of B1 (same 1280-channel output, so the neck is unchanged).
_base_ = ['./simclr_efficientnet-b1_8xb64-lars-coslr-200e_in1k.py']
model = dict(backbone=dict(arch='b0'))
