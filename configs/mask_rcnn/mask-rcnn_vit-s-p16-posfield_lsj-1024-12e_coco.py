# Mask R-CNN, ViT-S/16 from our pre-training (the paper's ablation backbone).
_base_ = ['./mask-rcnn_vit-b-p16-posfield_lsj-1024-12e_coco.py']
model = dict(backbone=dict(arch='small'), neck=dict(backbone_channel=384, in_channels=[96, 192, 384, 384]))
