# Default job, DINOv2-dagger row (--with-baseline, or the evidence preset): mask-rcnn_vit-mini-p16_demo-coco.py
# fine-tuning the teacher of dinov2-dagger_vit-mini-p16_demo-pool.py. The backbone delta is the baseline's one
# fragment (configs/_base_/models/dinov2-dagger.py); 96: the demo pre-training's img_size, its pos_embed grid.
_base_ = ['./mask-rcnn_vit-mini-p16_demo-coco.py', '../_base_/models/dinov2-dagger.py']
model = dict(backbone=dict(
    _base_.dinov2_dagger.backbone, pretrain_img_size=96,
    init_cfg=dict(checkpoint='work_dirs/default_job/seed_0/pretrain_dinov2-dagger/backbone.pth')))
