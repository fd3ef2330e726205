# The same fine-tuning from the SimCLR pre-training on the demo pool (stage 1 of tools/run_localization_job.py):
#   python tools/train.py configs/localization/clsloc_efficientnet-lite0_simclr-demo-pool_1xb16-40iter_demo-voc.py \
#       --cfg-options model.init_checkpoint=work_dirs/localization_job/simclr/iter_300.pth
_base_ = ['./clsloc_efficientnet-lite0_random-init_1xb16-40iter_demo-voc.py']
model = dict(init='simclr', init_checkpoint='work_dirs/localization_job/simclr/iter_300.pth')
