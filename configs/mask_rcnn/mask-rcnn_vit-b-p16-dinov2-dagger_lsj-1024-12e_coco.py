# Baseline: the DINOv2-dagger checkpoint (ordinary interpolated position embedding) through the same recipe. The
# backbone delta is the baseline's one fragment (configs/_base_/models/dinov2-dagger.py); 224: its pos_embed grid.
#   bash tools/dist_train.sh configs/posfield/dinov2-dagger_vit-base-p16_8xb64-amp-100e_in1k.py 8
#   bash tools/dist_train.sh THIS_CONFIG 8 --cfg-options model.backbone.init_cfg.checkpoint=PRETRAIN_OR_BACKBONE.pth
_base_ = ['./mask-rcnn_vit-b-p16-posfield_lsj-1024-12e_coco.py', '../_base_/models/dinov2-dagger.py']
model = dict(backbone=dict(
    _base_.dinov2_dagger.backbone, pretrain_img_size=224,
    init_cfg=dict(checkpoint='work_dirs/dinov2-dagger_vit-base-p16_8xb64-amp-100e_in1k/epoch_100.pth')))
