# SimCLR on any folder of unlabelled images (searched recursively; no annotation file needed):
#   python tools/train.py configs/simclr/simclr_efficientnet-b1_8xb64-lars-coslr-200e_unlabeled-folder.py \
#       --cfg-options train_dataloader.dataset.data_root=/path/to/images
_base_ = [
    '../_base_/models/simclr_efficientnet-b1.py',
    '../_base_/datasets/simclr_unlabeled_folder.py',
    '../_base_/schedules/simclr_lars_coslr_200e.py',
    '../_base_/simclr_loc_runtime.py',
]
