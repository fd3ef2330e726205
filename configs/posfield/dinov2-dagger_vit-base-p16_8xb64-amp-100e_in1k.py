# Baseline "DINOv2-dagger" at the paper's ViT-B/16 setting (configs/_base_/models/dinov2-dagger.py): the
# pre-training of configs/mask_rcnn/mask-rcnn_vit-b-p16-dinov2-dagger_lsj-1024-12e_coco.py.
_base_ = ['./posfield_vit-base-p16_8xb64-amp-100e_in1k.py', '../_base_/models/dinov2-dagger.py']
model = {{_base_.dinov2_dagger}}
train_dataloader = {{_base_.dinov2_dagger_data}}
