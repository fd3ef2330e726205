# Baseline: backbone from an ImageNet-supervised EfficientNet-B1 mmpretrain checkpoint (backbone.* keys),
# e.g. mmpretrain's efficientnet-b1 ImageNet model, downloaded by you beforehand:
#   --cfg-options model.init_checkpoint=checkpoints/efficientnet-b1_3rdparty_8xb32_in1k.pth
# (Offline, the only ImageNet-supervised EfficientNet weights are Lite0's: see the -lite0 config.)
_base_ = ['./clsloc_efficientnet-b1_simclr-in1k_1xb32-50e_voc0712-100pct.py']
model = dict(init='supervised', init_checkpoint='checkpoints/efficientnet-b1_in1k.pth')
