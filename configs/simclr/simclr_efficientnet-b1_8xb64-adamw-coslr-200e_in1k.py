# AdamW instead of LARS (our choice of values; the paper allows either optimiser). Norms and biases
# get no weight decay. The warm-up + cosine schedule of the LARS base is kept.
_base_ = ['./simclr_efficientnet-b1_8xb64-lars-coslr-200e_in1k.py']
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=1e-4),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0))
