# EfficientNet-B3: width x1.2, 1536 output channels.
_base_ = ['./simclr_efficientnet-b1_8xb64-lars-coslr-200e_in1k.py']
model = dict(backbone=dict(arch='b3'), neck=dict(in_channels=1536, hid_channels=1536))
