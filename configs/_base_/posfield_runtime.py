# Runtime shared by all position-field pre-training configs (mmpretrain scope).
default_scope = 'mmpretrain'
custom_imports = dict(imports=['projects.posfield'], allow_failed_imports=False)

default_hooks = dict(
    runtime_info=dict(type='RuntimeInfoHook'),
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),  # prints loss terms, diagnostics and the ETA
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    non_finite_loss=dict(type='NonFiniteLossHook'),  # stop at a NaN/Inf loss (projects/common/hooks.py)
    # the main process's random state in every checkpoint, restored on resume (projects/posfield/engine/resume.py)
    random_state=dict(type='RandomStateHook'),
)
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
# The algorithm owns its optimisation step (prototype freezing, EMA after the step); see ddp_wrapper.py.
model_wrapper_cfg = dict(type='SSLDistributedDataParallel')
log_processor = dict(window_size=10, custom_cfg=[dict(data_src='', method='mean', window_size='global')])
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)
log_level = 'INFO'
load_from = None
resume = False  # `tools/train.py CONFIG --resume` continues from the latest checkpoint in the work dir
randomness = dict(seed=0, diff_rank_seed=True)
