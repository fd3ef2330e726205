# SimCLR's two-view augmentation (localization.md): random resized crop, flip, colour jitter (numpy-2-safe)
# 0.8/0.8/0.8/0.2 with p=0.8, grayscale p=0.2, Gaussian blur p=0.5. 224 px for every EfficientNet size.
view_pipeline = [
    dict(type='RandomResizedCrop', scale=224, backend='pillow'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomApply',
         transforms=[dict(type='HueSafeColorJitter', brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2)],
         prob=0.8),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True, channel_weights=(0.114, 0.587, 0.2989)),
    dict(type='GaussianBlur', magnitude_range=(0.1, 2.0), magnitude_std='inf', prob=0.5),
]
train_pipeline = [
    dict(type='LoadRGBImage', on_error='skip'),  # any image mode; unreadable files skipped
    dict(type='MultiView', num_views=2, transforms=[view_pipeline]),
    dict(type='PackInputs'),
]
