# The DINOv2-dagger baseline, defined once: the method's code with both additions off - an ordinary learned
# position embedding interpolated per resolution (no field; boxes and placement unused) and content masking only.
# A pre-training config becomes the baseline by adding this file to its _base_ and
#   model = {{_base_.dinov2_dagger}}
#   train_dataloader = {{_base_.dinov2_dagger_data}}
# (the model's part and the batch's part: placement and masking are options of the collate function).
# Detection: the `backbone` part is also the detector's whole delta (PosFieldViTDet takes the same two keys), so a
# Mask R-CNN config fine-tunes a dagger checkpoint by adding this file to its _base_ and
#   model = dict(backbone=dict(_base_.dinov2_dagger.backbone, pretrain_img_size=<pre-training resolution>))
# (pretrain_img_size is per config: the grid of the checkpoint's pos_embed). Keep `backbone` to keys both backbones
# take. They are no variables of their own, so that a pre-training baseline differs from the method only by these.
dinov2_dagger = dict(
    backbone=dict(pos_embed_type='interpolate', pos_field=None),
)
dinov2_dagger_data = dict(collate_fn=dict(placement=dict(mode='const'), masking=dict(content_ratio=1.0)))
