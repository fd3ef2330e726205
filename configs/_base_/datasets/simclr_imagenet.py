# ImageNet-1k train split (labels unused), mmpretrain's ImageNet dataset under data/imagenet/.
_base_ = ['./simclr_pipeline.py']
data_root = 'data/imagenet/'
train_dataloader = dict(
    batch_size=64,
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='ImageNet', data_root=data_root, split='train', pipeline={{_base_.train_pipeline}}),
)
