# SimCLR pre-training of EfficientNet-B1 on ImageNet-1k (labels unused), the paper's feature extractor.
#   bash tools/dist_train.sh configs/simclr/simclr_efficientnet-b1_8xb64-lars-coslr-200e_in1k.py 8
# Fine-tune it with configs/localization/ (model.init_checkpoint = the last checkpoint of this run).
_base_ = [
    '../_base_/models/simclr_efficientnet-b1.py',
    '../_base_/datasets/simclr_imagenet.py',
    '../_base_/schedules/simclr_lars_coslr_200e.py',
    '../_base_/simclr_loc_runtime.py',
]
