# Baseline: the DINOv2-dagger checkpoint (ordinary interpolated position embedding) through the same recipe.
_base_ = ['./mask-rcnn_vit-b-p16-posfield_lsj-1024-12e_coco.py']
model = dict(backbone=dict(pos_embed_type='interpolate', pos_field=None, pretrain_img_size=224))
