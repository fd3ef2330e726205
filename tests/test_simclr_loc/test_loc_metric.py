"""LocalizationMetric on hand-made predictions: exact values for both input formats, ties, empties."""
import math

import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope

from projects.simclr_loc.evaluation import LocalizationMetric, box_iou, pessimistic_rank

SQUARE = [0., 0., 10., 10.]


def one_box(gt_box, label, pred_box, scores, pred_label=None):
    sample = dict(ori_gt_bboxes=np.array([gt_box], dtype=np.float32), gt_label=torch.tensor([label]),
                  pred_box=torch.tensor(pred_box), pred_score=torch.tensor(scores))
    if pred_label is not None:
        sample['pred_label'] = torch.tensor([pred_label])
    return sample


def detection(gt_boxes, gt_labels, boxes, scores, labels):
    return dict(gt_instances=dict(bboxes=torch.tensor(gt_boxes, dtype=torch.float32).reshape(-1, 4),
                                  labels=torch.tensor(gt_labels, dtype=torch.long)),
                pred_instances=dict(bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                                    scores=torch.tensor(scores, dtype=torch.float32),
                                    labels=torch.tensor(labels, dtype=torch.long)))


def evaluate(metric, samples):
    metric.process(None, samples)
    return metric.compute_metrics(metric.results)


def test_box_iou_and_rank_primitives():
    assert box_iou([SQUARE], [[0, 0, 10, 5]])[0, 0] == 0.5
    assert box_iou([SQUARE], [[10, 10, 20, 20]])[0, 0] == 0.0  # touching corners
    assert box_iou([SQUARE], [[0, 0, 0, 0]])[0, 0] == 0.0  # empty box, no division by zero
    scores = np.array([0.3, 0.3, 0.3, 0.1])
    assert pessimistic_rank(scores, 1) == 2  # two other classes tie with it: both count against
    assert pessimistic_rank(scores, 3) == 3
    assert pessimistic_rank(np.array([0.1, 0.9]), 1) == 0


def one_box_samples():
    return [
        one_box(SQUARE, 2, [0, 0, 10, 5], [0.1, 0.2, 0.7, 0.0]),  # IoU 0.5, rank 0
        one_box(SQUARE, 1, [0, 0, 10, 10], [0.3, 0.3, 0.3, 0.1], pred_label=0),  # IoU 1, tie -> rank 2
        one_box(SQUARE, 3, [20, 20, 30, 30], [0.25, 0.25, 0.25, 0.25]),  # IoU 0, all tie -> rank 3
        one_box([0, 0, 4, 10], 0, [0, 0, 10, 10], [0.2, 0.6, 0.1, 0.1]),  # IoU 0.4, rank 1
    ]


def test_one_box_format_exact_values():
    res = evaluate(LocalizationMetric(), one_box_samples())
    assert res == pytest.approx({'top1': 25.0, 'top3': 75.0, 'mean_iou': 47.5, 'acc_iou50': 50.0,
                                 'acc_iou70': 25.0, 'num_objects': 4})


def test_one_box_class_aware_zeroes_wrong_class_boxes():
    # pred labels: 2 (right), 0 (given; wrong), argmax of a 4-way tie = 0 (wrong), 1 (wrong)
    res = evaluate(LocalizationMetric(class_aware=True), one_box_samples())
    assert res['mean_iou'] == pytest.approx(12.5)
    assert res['acc_iou50'] == pytest.approx(25.0)
    assert res['acc_iou70'] == 0.0
    assert res['top1'] == pytest.approx(25.0)  # classification is unaffected


def test_detector_format_best_iou_any_class_and_class_votes():
    samples = [
        detection([SQUARE, [20, 20, 40, 40]], [0, 1],
                  boxes=[[0, 0, 10, 10], [0, 0, 10, 5], [20, 20, 40, 30], [100, 100, 110, 110]],
                  scores=[0.9, 0.8, 0.3, 0.95], labels=[1, 0, 1, 2]),
        detection([[0, 0, 5, 5]], [2], boxes=[], scores=[], labels=[]),  # nothing predicted
        detection([], [], boxes=[SQUARE], scores=[0.5], labels=[0]),  # no GT: contributes nothing
    ]
    res = evaluate(LocalizationMetric(), samples)
    # GT0: best IoU 1.0 (a class-1 box); votes {1: 0.9, 0: 0.8} -> rank 1. GT1: IoU 0.5, rank 0. GT2: 0, unranked
    assert res == pytest.approx({'top1': 100 / 3, 'top3': 200 / 3, 'mean_iou': 50.0, 'acc_iou50': 200 / 3,
                                 'acc_iou70': 100 / 3, 'num_objects': 3})
    aware = evaluate(LocalizationMetric(class_aware=True), samples)
    # GT0 may only use the class-0 box (IoU 0.5)
    assert aware['mean_iou'] == pytest.approx(100 / 3)
    assert aware['acc_iou70'] == 0.0
    assert aware['acc_iou50'] == pytest.approx(200 / 3)


def test_detector_ties_and_score_threshold():
    tie = detection([SQUARE], [0], boxes=[SQUARE, SQUARE], scores=[0.6, 0.6], labels=[0, 1])
    res = evaluate(LocalizationMetric(topk=(1, 2)), [tie])
    assert res['top1'] == 0.0 and res['top2'] == 100.0  # equal scores: the other class counts against
    thr = detection([SQUARE], [0], boxes=[SQUARE, [0, 0, 10, 5]], scores=[0.1, 0.9], labels=[0, 0])
    assert evaluate(LocalizationMetric(score_thr=0.5), [thr])['mean_iou'] == pytest.approx(50.0)
    assert evaluate(LocalizationMetric(), [thr])['mean_iou'] == pytest.approx(100.0)


def test_custom_thresholds_and_empty_results():
    res = evaluate(LocalizationMetric(topk=1, iou_thrs=(0.3, 0.5)), one_box_samples())
    assert set(res) == {'top1', 'mean_iou', 'acc_iou30', 'acc_iou50', 'num_objects'}
    assert res['acc_iou30'] == pytest.approx(75.0)
    empty = LocalizationMetric().compute_metrics([[], []])
    assert empty['num_objects'] == 0 and math.isnan(empty['top1']) and math.isnan(empty['mean_iou'])


def test_bad_samples_and_arguments_are_named():
    with pytest.raises(KeyError, match='neither `pred_instances`'):
        LocalizationMetric().process(None, [dict(gt_label=torch.tensor([0]))])
    with pytest.raises(KeyError, match='ori_gt_bboxes'):
        LocalizationMetric().process(None, [dict(pred_box=torch.zeros(4), pred_score=torch.ones(3))])
    with pytest.raises(KeyError, match='gt_instances'):
        LocalizationMetric().process(None, [dict(pred_instances=dict(bboxes=torch.zeros(0, 4)))])
    with pytest.raises(ValueError, match='iou_thrs'):
        LocalizationMetric(iou_thrs=(1.5,))
    with pytest.raises(ValueError, match='topk'):
        LocalizationMetric(topk=(0,))


def test_scores_mmdet_detections_inside_an_mmdet_evaluator():
    """The Mask R-CNN line: `type='mmpretrain.LocalizationMetric'` built in the mmdet scope, fed DetDataSamples."""
    from mmdet.structures import DetDataSample
    from mmengine.evaluator import Evaluator
    from mmengine.structures import InstanceData

    import projects.simclr_loc  # noqa: F401  (what custom_imports does in a config)

    sample = DetDataSample(metainfo=dict(img_path='x.jpg', ori_shape=(50, 50)))
    sample.gt_instances = InstanceData(bboxes=torch.tensor([SQUARE, [20., 20., 40., 40.]]), labels=torch.tensor([0, 1]))
    sample.ignored_instances = InstanceData(bboxes=torch.tensor([[0., 0., 50., 50.]]), labels=torch.tensor([3]))
    sample.pred_instances = InstanceData(bboxes=torch.tensor([SQUARE, [20., 20., 40., 30.]]),
                                         scores=torch.tensor([0.9, 0.8]), labels=torch.tensor([0, 2]))
    with DefaultScope.overwrite_default_scope('mmdet'):
        from mmdet.registry import EVALUATOR
        evaluator = EVALUATOR.build(dict(type='Evaluator', metrics=[dict(type='mmpretrain.LocalizationMetric')]))
        assert isinstance(evaluator, Evaluator)
        assert type(evaluator.metrics[0]).__name__ == 'LocalizationMetric'
        evaluator.process(data_samples=[sample], data_batch=None)
        res = evaluator.evaluate(1)
    # GT0: IoU 1, class 0 voted first -> top1. GT1: IoU 0.5 from a class-2 box; no class-1 vote -> wrong
    assert res == pytest.approx({'loc/top1': 50.0, 'loc/top3': 50.0, 'loc/mean_iou': 75.0, 'loc/acc_iou50': 100.0,
                                 'loc/acc_iou70': 50.0, 'loc/num_objects': 2})
