# Any folder of unlabelled images, searched recursively, no annotation file:
#   --cfg-options train_dataloader.dataset.data_root=/path/to/images
_base_ = ['./simclr_pipeline.py']
data_root = 'data/unlabeled/'
train_dataloader = dict(
    batch_size=64,
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='CustomDataset', data_root=data_root, with_label=False, pipeline={{_base_.train_pipeline}}),
)
