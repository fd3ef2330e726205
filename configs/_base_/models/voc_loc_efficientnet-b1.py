# Classify-and-localise on EfficientNet-B1: backbone -> global average pooling -> class logits + one box
# (sigmoid cx, cy, w, h), loss CE + 5 x L1 + 2 x GIoU. The backbone starts from a SimCLR checkpoint;
# override the path: --cfg-options model.init_checkpoint=work_dirs/<simclr run>/epoch_200.pth
model = dict(
    type='ClsLocModel',
    data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=20, mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], to_rgb=True),
    backbone=dict(type='EfficientNet', arch='b1', out_indices=(6, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='ClsLocHead', num_classes=20, in_channels=1280, box_hidden_channels=256, dropout=0.2,
              loss_cls=dict(type='CrossEntropyLoss', loss_weight=1.0), l1_weight=5.0, giou_weight=2.0),
    init='simclr',
    init_checkpoint='work_dirs/simclr_efficientnet-b1_8xb64-lars-coslr-200e_in1k/epoch_200.pth',
)
