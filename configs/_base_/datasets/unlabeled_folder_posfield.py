# Any folder of unlabelled images (searched recursively; no annotation file):
#   --cfg-options train_dataloader.dataset.data_root=/path/to/images
_base_ = ['./posfield_multicrop_pipeline.py']
data_root = 'data/unlabeled/'
train_dataloader = dict(
    batch_size=64,
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    # builds the step's MultiViewBatch in the workers: placement, masks, their indices (docs/design.md contract 2);
    # patch_size is the backbone's (the mask grid)
    collate_fn=dict(type='multiview_collate', patch_size=16),
    dataset=dict(type='CustomDataset', data_root=data_root, with_label=False, pipeline={{_base_.train_pipeline}}),
)
