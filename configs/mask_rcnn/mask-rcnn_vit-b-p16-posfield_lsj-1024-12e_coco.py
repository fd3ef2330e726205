# Mask R-CNN, ViT-B/16 from our pre-training (teacher), COCO 2017, LSJ 1024, 12 epochs at batch 64.
#   python tools/model_converters/extract_backbone.py PRETRAIN.pth backbone.pth --key teacher   (optional)
#   bash tools/dist_train.sh THIS_CONFIG 8 --cfg-options model.backbone.init_cfg.checkpoint=PRETRAIN_OR_BACKBONE.pth
_base_ = ['../_base_/det/mask-rcnn_vitdet-posfield.py', '../_base_/det/coco-instance_lsj-1024_12e.py']
