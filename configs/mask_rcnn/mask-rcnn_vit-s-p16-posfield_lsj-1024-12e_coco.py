# Mask R-CNN, ViT-S/16 from our pre-training (the paper's ablation backbone).
_base_ = ['./mask-rcnn_vit-b-p16-posfield_lsj-1024-12e_coco.py']
model = dict(backbone=dict(arch='ViT-S'), neck=dict(backbone_channel=384))
