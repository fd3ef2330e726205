# Reference: no pre-training (random initialisation), same recipe.
_base_ = ['./mask-rcnn_vit-b-p16-posfield_lsj-1024-12e_coco.py']
model = dict(backbone=dict(init_cfg=None))
