# The ViT-B/16 Mask R-CNN evaluated with COCO AP and, beside it, the SimCLR line's localisation metric
# (top-1/top-3, mean IoU, accuracy at IoU 0.5/0.7; best-IoU prediction per ground-truth object), so the
# detection line reports the same numbers as the classify-and-localise models (docs/localization.md).
_base_ = ['./mask-rcnn_vit-b-p16-posfield_lsj-1024-12e_coco.py']
custom_imports = dict(imports=['projects.posfield.det', 'projects.simclr_loc'], allow_failed_imports=False)
# CheckedCocoMetric, as in the base config: the ground truth goes through the dataset's checks (polygons of
# fewer than 3 points are dropped at load), so evaluation never crashes inside pycocotools (docs/reliability.md).
val_evaluator = [
    dict(type='CheckedCocoMetric', ann_file='data/coco/annotations/instances_val2017.json', metric=['bbox', 'segm'],
         format_only=False),
    dict(type='mmpretrain.LocalizationMetric'),
]
test_evaluator = val_evaluator
