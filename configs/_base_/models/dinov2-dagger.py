# The DINOv2-dagger baseline, defined once: the method's code with both additions off - an ordinary learned
# position embedding interpolated per resolution (no field; boxes and placement unused) and content masking only.
# A config becomes the baseline by adding this file to its _base_ and `model = {{_base_.dinov2_dagger}}`.
dinov2_dagger = dict(
    backbone=dict(pos_embed_type='interpolate', pos_field=None),
    data_preprocessor=dict(placement=dict(mode='const'), masking=dict(content_ratio=1.0)),
)
