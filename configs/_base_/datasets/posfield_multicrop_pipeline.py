# The pre-training pipeline (docs/design.md contract 2): 2 global 224 px + 8 local 96 px crops, each with the box
# it was cut from (fractions of the source image) and its flip. The canvas placement, canvas boxes and the
# content / position masks are drawn per batch by the dataloader's collate function (`multiview_collate`, in the
# workers), so ablations of placement and masking are `train_dataloader.collate_fn` deltas, not pipeline copies.
# The workers only decode, crop, resize, flip and build the batch: DINO's photometric augmentation runs batched
# on the device, in the data preprocessor (`photometric=dict(type='MultiCropPhotometric')`); `photometric=True`
# here (with the preprocessor's `photometric=None`) runs the same recipe in the workers instead.
train_pipeline = [
    dict(type='LoadRGBImage', on_error='skip'),
    dict(type='PosFieldMultiCrop', global_crops_number=2, global_crops_size=224, global_crops_scale=(0.32, 1.0),
         local_crops_number=8, local_crops_size=96, local_crops_scale=(0.05, 0.32), photometric=False),
    dict(type='PackInputs', algorithm_keys=['crop_boxes', 'view_flips', 'source_hw'], meta_keys=['img_path']),
]
