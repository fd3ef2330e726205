# Baseline: the same model trained from a random initialisation (no pre-training). Other label fractions:
#   --cfg-options train_dataloader.dataset.label_fraction=0.1 (and the epochs of the matching simclr config)
_base_ = ['./clsloc_efficientnet-b1_simclr-in1k_1xb32-50e_voc0712-100pct.py']
model = dict(init='random', init_checkpoint=None)
