"""The tiny Mask R-CNN config trains and tests on a COCO-format set; the metric path gives AP 1.0 on GT."""
import json
import os.path as osp

import numpy as np
import pytest
import torch

from tests.helpers import ROOT, write_coco
from tests.helpers import SHAPE_CLASSES as CLASSES

TINY_DET = osp.join(ROOT, 'configs/mask_rcnn/mask-rcnn_vit-tiny-p16-posfield_cpu-smoke_coco-format.py')


def _options(root, **extra):
    ann = osp.join(root, 'annotations', 'instances_val.json')
    opts = {'train_dataloader.dataset.data_root': root, 'val_dataloader.dataset.data_root': root,
            'test_dataloader.dataset.data_root': root, 'val_evaluator.ann_file': ann, 'test_evaluator.ann_file': ann}
    opts.update(extra)
    return opts


def test_tiny_config_trains_and_reports_coco_metrics(tmp_path):
    from projects.common.runner_setup import build_runner, load_config
    root = write_coco(tmp_path / 'coco') + '/'
    cfg = load_config(TINY_DET, _options(root, **{'train_cfg.max_iters': 2, 'train_cfg.val_interval': 2}))
    cfg.work_dir = str(tmp_path / 'wd')
    runner = build_runner(cfg)
    runner.train()
    metrics = runner.test()
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75', 'coco/segm_mAP', 'coco/segm_mAP_50'):
        assert key in metrics and -1.0 <= metrics[key] <= 1.0
    assert osp.exists(tmp_path / 'wd' / 'iter_2.pth')


def test_ground_truth_predictions_score_ap_one(tmp_path):
    """Feed the annotations back as predictions (distinct scores) through mmdet's CocoMetric."""
    from mmdet.evaluation import CocoMetric
    from pycocotools import mask as mask_utils
    root = write_coco(tmp_path / 'coco', n_train=1, n_val=3)
    ann_file = osp.join(root, 'annotations', 'instances_val.json')
    coco = json.load(open(ann_file))
    metric = CocoMetric(ann_file=ann_file, metric=['bbox', 'segm'])
    metric.dataset_meta = dict(classes=CLASSES)
    score = 1.0
    for img in coco['images']:
        anns = [a for a in coco['annotations'] if a['image_id'] == img['id']]
        boxes, labels, masks, scores = [], [], [], []
        for a in anns:
            x, y, w, h = a['bbox']
            boxes.append([x, y, x + w, y + h])
            labels.append(a['category_id'] - 1)
            rle = mask_utils.frPyObjects(a['segmentation'], img['height'], img['width'])
            masks.append(mask_utils.decode(mask_utils.merge(rle)).astype(bool))
            scores.append(score)
            score -= 0.01  # distinct scores: ties make COCOeval report 0.949 instead of 1.0
        pred = dict(bboxes=torch.tensor(boxes, dtype=torch.float32), scores=torch.tensor(scores),
                    labels=torch.tensor(labels), masks=torch.from_numpy(np.stack(masks)))
        metric.process({}, [dict(img_id=img['id'], ori_shape=(img['height'], img['width']), pred_instances=pred)])
    results = metric.evaluate(len(coco['images']))
    assert results['coco/bbox_mAP'] == pytest.approx(1.0)
    assert results['coco/segm_mAP'] == pytest.approx(1.0)


def test_bad_coco_inputs_fail_clearly(tmp_path):
    from mmdet.registry import DATASETS
    from mmengine.registry import init_default_scope

    import projects.posfield.det  # noqa: F401
    init_default_scope('mmdet')
    root = write_coco(tmp_path / 'coco', n_train=2, n_val=1)

    def build(ann):
        return DATASETS.build(dict(type='CocoDataset', data_root=root, ann_file=ann, data_prefix=dict(img='train/'),
                                   metainfo=dict(classes=CLASSES), pipeline=[dict(type='LoadImageFromFile')]))

    with pytest.raises(FileNotFoundError, match='missing.json'):
        build('annotations/missing.json')
    bad = tmp_path / 'coco' / 'annotations' / 'broken.json'
    bad.write_text('{"images": [')
    with pytest.raises(Exception, match='broken.json|Expecting'):
        build('annotations/broken.json')
    data = json.load(open(osp.join(root, 'annotations', 'instances_train.json')))
    data['images'][0]['file_name'] = 'no_such_image.jpg'
    data['annotations'][0]['bbox'] = [10, 10, 0, 0]  # zero area: mmdet's parser drops it
    data['annotations'][1]['bbox'] = [500, 500, 10, 10]  # outside the image: dropped by the same filter
    (tmp_path / 'coco' / 'annotations' / 'edited.json').write_text(json.dumps(data))
    ds = build('annotations/edited.json')
    kept = [inst for info in [ds.get_data_info(i) for i in range(len(ds))] for inst in info['instances']]
    assert all(inst['bbox'][2] > inst['bbox'][0] for inst in kept)
    idx = [i for i in range(len(ds)) if ds.get_data_info(i)['img_path'].endswith('no_such_image.jpg')]
    assert idx, 'the image whose file is missing must still be listed (it is the loader that fails)'
    with pytest.raises(FileNotFoundError, match='no_such_image.jpg'):
        ds.pipeline(ds.get_data_info(idx[0]))
