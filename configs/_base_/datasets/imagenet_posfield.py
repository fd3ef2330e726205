# ImageNet-1K train split (mmpretrain layout: data/imagenet/train/<class>/*.JPEG, meta/train.txt optional).
_base_ = ['./posfield_multicrop_pipeline.py']
data_root = 'data/imagenet/'
train_dataloader = dict(
    batch_size=64,
    num_workers=10,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    # builds the step's MultiViewBatch in the workers: placement, masks, their indices (docs/design.md contract 2);
    # patch_size is the backbone's (the mask grid)
    collate_fn=dict(type='multiview_collate', patch_size=16),
    dataset=dict(type='ImageNet', data_root=data_root, split='train', pipeline={{_base_.train_pipeline}}),
)
