# AdamW, lr = 0.004 * sqrt(total_batch / 1024) (DINOv2's rule; 0.002 for 4 x 64), warm-up 10 epochs,
# cosine to 1e-6 (scale base_lr by hand for another batch: the rule is sqrt, mmengine's auto_scale_lr is linear);
# weight decay 0.04 -> 0.4 cosine on every parameter except biases, norms and layer-scale gammas (the 1-D ones), as
# DINOv2's param_groups.py: [CLS], mask tokens and position embeddings / the field decay; gradients clipped to 3.0
# per module (the backbone and each head on its own norm, as DINOv2); layer decay 0.9; patch-embed lr x 0.2.
# AMP with fp16 by default (`--amp-dtype bfloat16` or optim_wrapper.dtype='bfloat16' on Ampere+).
# fused=True: torch's one-kernel AdamW (CPU and CUDA), the same update as the per-tensor loop but several times
# faster on CPU (docs/benchmarks.md).
max_epochs = 100
base_lr = 0.004 * (256 / 1024) ** 0.5
optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(type='AdamW', lr=base_lr, betas=(0.9, 0.999), weight_decay=0.04, fused=True),
    clip_grad=dict(max_norm=3.0, per_module=True),
    constructor='ViTLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.9, patch_embed_lr_mult=0.2, norm_decay_mult=0.0, flat_decay_mult=0.0),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=10, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - 10, eta_min=1e-6, by_epoch=True, begin=10,
         end=max_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingWeightDecay', eta_min=0.4, T_max=max_epochs, by_epoch=True, begin=0,
         end=max_epochs, convert_to_iter_based=True),
]
# mmengine's epoch loop, resumable mid-epoch and exactly (projects/posfield/engine/resume.py)
train_cfg = dict(type='ResumableEpochBasedTrainLoop', max_epochs=max_epochs)
