# Runtime shared by the SimCLR pre-training and the classify-and-localise configs (mmpretrain scope).
default_scope = 'mmpretrain'
custom_imports = dict(imports=['projects.simclr_loc'], allow_failed_imports=False)

default_hooks = dict(
    runtime_info=dict(type='RuntimeInfoHook'),
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    non_finite_loss=dict(type='NonFiniteLossHook'),  # stop at a NaN/Inf loss (projects/common/hooks.py)
    # `tools/test.py CONFIG CKPT --show-dir DIR` switches it on
    visualization=dict(type='VisualizationHook', enable=False),
)
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
log_processor = dict(window_size=10)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)
log_level = 'INFO'
load_from = None
resume = False  # `tools/train.py CONFIG --resume` continues from the latest checkpoint in the work dir
randomness = dict(seed=0, diff_rank_seed=True)
