# The ViT-S/16 setting with k-NN validation of the teacher every 10 epochs (k=20, T=0.07, cosine; DINO's
# weighted vote) on ImageNet val, using at most 100 training images per class as the memory bank.
_base_ = ['./posfield_vit-small-p16_4xb64-amp-100e_in1k.py']
custom_hooks = [
    dict(type='KNNEvalHook',
         train_dataset=dict(type='ImageNet', data_root='data/imagenet', split='train'),
         val_dataset=dict(type='ImageNet', data_root='data/imagenet', split='val'),
         interval=10, key='teacher', k=20, temperature=0.07, feature='cls', img_size=224, batch_size=128,
         num_workers=8, max_per_class=100, linear_probe=False),
]
