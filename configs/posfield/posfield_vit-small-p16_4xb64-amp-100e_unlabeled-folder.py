# Pre-train on any folder of unlabelled images (recursive, no annotation file):
#   python tools/train.py configs/posfield/posfield_vit-small-p16_4xb64-amp-100e_unlabeled-folder.py \
#       --cfg-options train_dataloader.dataset.data_root=/path/to/images
_base_ = [
    '../_base_/models/posfield_vit-small-p16.py',
    '../_base_/datasets/unlabeled_folder_posfield.py',
    '../_base_/schedules/posfield_adamw_100e.py',
    '../_base_/posfield_runtime.py',
]
