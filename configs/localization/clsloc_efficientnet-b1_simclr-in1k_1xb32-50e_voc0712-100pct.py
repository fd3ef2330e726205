# Classify-and-localise on VOC07+12 with all labels, backbone from our SimCLR EfficientNet-B1 run:
#   python tools/train.py configs/localization/clsloc_efficientnet-b1_simclr-in1k_1xb32-50e_voc0712-100pct.py \
#       --cfg-options model.init_checkpoint=work_dirs/simclr_efficientnet-b1_8xb64-lars-coslr-200e_in1k/epoch_200.pth
# Metrics (VOC2007 test): loc/top1, loc/top3, loc/mean_iou, loc/acc_iou50, loc/acc_iou70.
_base_ = [
    '../_base_/models/voc_loc_efficientnet-b1.py',
    '../_base_/datasets/voc_loc_0712.py',
    '../_base_/schedules/voc_loc_adamw_50e.py',
    '../_base_/simclr_loc_runtime.py',
]
default_hooks = dict(logger=dict(interval=20),
                     checkpoint=dict(interval=5, max_keep_ckpts=2, save_best='loc/acc_iou50', rule='greater'))
