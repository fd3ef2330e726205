# The method with its defaults (docs/posfield.md): ViT-S/16, 50x50 learnable field, Beta(2,5) placement,
# content:position masking 50:50, shared DINO/iBOT head with 65536 prototypes.
num_prototypes = 65536
model = dict(
    type='PosFieldSSL',
    # Moves the multi-view batch to the device, applies DINO's photometric augmentation there, batched (the
    # pipelines' PosFieldMultiCrop has photometric=False), and normalises the views. The batch itself (canvas
    # placement, default Beta(2,5), aspect kept; masks, default: half of the global views masked, ratio 0.1-0.5,
    # content:position 50:50 per image, block / cross-wise) is built by train_dataloader.collate_fn; the
    # defaults live in projects/posfield/batch/collate.py and batch/placement.py.
    data_preprocessor=dict(type='MultiViewDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], to_rgb=True, photometric=dict(type='MultiCropPhotometric')),
    backbone=dict(type='PosFieldViT', arch='ViT-S', patch_size=16, img_size=224, pos_embed_type='field',
                  pos_field=dict(field_size=50, mode='learnable'), layer_scale_init_value=1e-5,
                  # DINOv2's rule: every block drops with the full rate (not mmpretrain's linear ramp from 0),
                  # exactly int(B * 0.9) samples per branch, and the dropped samples' residual branches are not
                  # computed (ViTBlock, vit_block.py; a fixed count also needs no host sync on GPU)
                  drop_path_rate=0.1, drop_path_uniform=True, drop_path_mode='dinov2'),
    # in_channels=None: the neck takes the backbone's width (PosFieldSSL). The prototypes' weight-norm magnitude is
    # trained (norm_last_layer=False), as DINOv2's DINOHead.
    neck=dict(type='DINOProjectionNeck', in_channels=None, hidden_channels=2048, bottleneck_channels=256,
              num_prototypes=num_prototypes, num_layers=3, norm_last_layer=False),
    cls_head=dict(type='DINOClsHead', loss=dict(type='DINOClsLoss', out_dim=num_prototypes, student_temp=0.1,
                                                center_momentum=0.9, centering='centering')),
    head=dict(type='DualMIMHead', content_weight=1.0, pos_weight=1.0,
              loss=dict(type='iBOTPatchLoss', out_dim=num_prototypes, student_temp=0.1, center_momentum=0.9,
                        centering='centering')),
    koleo_weight=0.1,
    momentum=(0.992, 1.0),
    teacher_temp=(0.04, 0.07),
    teacher_temp_warmup_epochs=30,
    freeze_prototypes_epochs=1,
)
