# Reference: no pre-training (random initialisation), same recipe; the paper's 50 x 50 field, since there is
# no checkpoint to take its size from.
_base_ = ['./mask-rcnn_vit-b-p16-posfield_lsj-1024-12e_coco.py']
model = dict(backbone=dict(init_cfg=None, pos_field=dict(field_size=50)))
