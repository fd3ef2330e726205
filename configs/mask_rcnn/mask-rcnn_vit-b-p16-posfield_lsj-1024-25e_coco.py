# Longer schedule: 25 epochs at batch 64 (46,000 iterations); the lr steps move with max_iters.
_base_ = ['./mask-rcnn_vit-b-p16-posfield_lsj-1024-12e_coco.py']
max_iters = 46000
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=250),
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False,
         milestones=[int(max_iters * 0.889), int(max_iters * 0.963)], gamma=0.1),
]
