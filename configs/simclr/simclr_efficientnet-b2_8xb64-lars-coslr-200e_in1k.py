# EfficientNet-B2: width x1.1, so the last stage has 1408 channels and the neck must take them.
_base_ = ['./simclr_efficientnet-b1_8xb64-lars-coslr-200e_in1k.py']
model = dict(backbone=dict(arch='b2'), neck=dict(in_channels=1408, hid_channels=1408))
