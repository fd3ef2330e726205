from .localization_metric import LocalizationMetric, box_iou, pessimistic_rank

__all__ = ['LocalizationMetric', 'box_iou', 'pessimistic_rank']
