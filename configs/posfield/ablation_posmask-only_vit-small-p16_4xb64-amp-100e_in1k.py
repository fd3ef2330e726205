# Ablation "position masking only": positions are NOT crop-aligned (every view gets the whole image's box,
# i.e. an ordinary per-view position embedding sampled from the field, no placement augmentation), with
# content and position masking 50:50. Decision: the field is kept so that a POSMASK token can replace it.
_base_ = ['./posfield_vit-small-p16_4xb64-amp-100e_in1k.py']
train_dataloader = dict(collate_fn=dict(crop_aligned=False, placement=dict(mode='const')))
