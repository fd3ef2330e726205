# 10 % of the VOC07+12 training labels (class-stratified subset, nested in the larger fractions, seed 0).
# Fewer images per epoch, so more epochs (our choice: a few thousand iterations at every fraction).
_base_ = ['./clsloc_efficientnet-b1_simclr-in1k_1xb32-50e_voc0712-100pct.py']
train_dataloader = dict(dataset=dict(label_fraction=0.1, subset_seed=0))
max_epochs = 150
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=1, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - 1, by_epoch=True, begin=1, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=15)
default_hooks = dict(checkpoint=dict(interval=15))
