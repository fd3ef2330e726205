"""Classify-and-localise head: pooled features -> class logits + one normalised box.

Box parametrisation: ``(cx, cy, w, h)`` relative to the network input image, each through a sigmoid so it
lies in (0, 1). Training loss = ``loss_cls`` (cross-entropy) + ``l1_weight`` * L1 on ``(cx, cy, w, h)``
(summed over the 4 coordinates, averaged over images) + ``giou_weight`` * (1 - GIoU) (DETR's weights
5 and 2 by default).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from torchvision.ops import box_convert, generalized_box_iou_loss
from torchvision.ops.boxes import box_iou


def _as_tensor(value, device) -> torch.Tensor:
    return torch.as_tensor(value, dtype=torch.float32, device=device)


@MODELS.register_module()
class ClsLocHead(BaseModule):
    """Class logits and one box per image from the last pooled feature.

    Data samples in training need ``gt_label`` and ``gt_bboxes`` (``(1, 4)`` xyxy pixels of the network
    input, as ``VOCLocalizationDataset`` + mmcv ``Resize``/``RandomFlip`` + ``PackInputs(algorithm_keys=
    ['gt_bboxes', 'ori_gt_bboxes'])`` provide) and the ``img_shape`` metainfo.

    ``predict`` sets ``pred_score`` (softmax over classes), ``pred_label`` (top-1) and ``pred_box``
    (``(4,)`` xyxy in **original image pixels**: the input-frame box is un-flipped and divided by
    ``scale_factor``; this inverts resize/flip test pipelines, not crops).

    Args:
        num_classes (int): number of classes.
        in_channels (int): channels of the pooled feature.
        box_hidden_channels (int): hidden width of the box MLP; 0 means one linear layer. Defaults to 256.
        dropout (float): dropout before both branches. Defaults to 0.
        loss_cls (dict): classification loss config. Defaults to CrossEntropyLoss with weight 1.
        l1_weight (float): weight of the L1 box loss. Defaults to 5.
        giou_weight (float): weight of the GIoU box loss. Defaults to 2.
    """

    def __init__(self, num_classes: int, in_channels: int, box_hidden_channels: int = 256, dropout: float = 0.0,
                 loss_cls: dict = dict(type='CrossEntropyLoss', loss_weight=1.0), l1_weight: float = 5.0,
                 giou_weight: float = 2.0, init_cfg: Optional[dict] = dict(type='Normal', layer='Linear', std=0.01)):
        super().__init__(init_cfg=init_cfg)
        if num_classes <= 0:
            raise ValueError(f'ClsLocHead: num_classes must be positive, got {num_classes}')
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc_cls = nn.Linear(in_channels, num_classes)
        if box_hidden_channels > 0:
            self.box_branch = nn.Sequential(nn.Linear(in_channels, box_hidden_channels), nn.ReLU(inplace=True),
                                            nn.Linear(box_hidden_channels, 4))
        else:
            self.box_branch = nn.Linear(in_channels, 4)
        self.loss_cls = MODELS.build(loss_cls)
        self.l1_weight = float(l1_weight)
        self.giou_weight = float(giou_weight)

    def pre_logits(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        return feats[-1]

    def forward(self, feats: Tuple[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(logits (B, num_classes), boxes (B, 4) normalised cx, cy, w, h)``."""
        x = self.pre_logits(feats)
        if x.dim() != 2 or x.shape[1] != self.in_channels:
            raise ValueError(f'ClsLocHead expects pooled features (B, {self.in_channels}), got {tuple(x.shape)}; '
                             'put a GlobalAveragePooling neck before it and check in_channels')
        x = self.dropout(x)
        return self.fc_cls(x), self.box_branch(x).sigmoid()

    @staticmethod
    def _targets(data_samples: Sequence[DataSample], device) -> Tuple[torch.Tensor, torch.Tensor]:
        labels, boxes = [], []
        for i, ds in enumerate(data_samples):
            if 'gt_bboxes' not in ds:
                raise KeyError(f'ClsLocHead: data sample {i} ({ds.metainfo.get("img_path", "?")}) has no '
                               "gt_bboxes; pack it with PackInputs(algorithm_keys=['gt_bboxes', 'ori_gt_bboxes'])")
            box = _as_tensor(ds.gt_bboxes, device).reshape(-1, 4)
            if box.shape[0] != 1:
                raise ValueError(f'ClsLocHead: data sample {i} has {box.shape[0]} target boxes, expected 1')
            h, w = ds.metainfo['img_shape'][:2]
            box = box / _as_tensor([w, h, w, h], device)
            boxes.append(box_convert(box, 'xyxy', 'cxcywh'))
            labels.append(ds.gt_label.reshape(-1)[:1].to(device))
        return torch.cat(labels).long(), torch.cat(boxes)

    def loss(self, feats: Tuple[torch.Tensor], data_samples: List[DataSample]) -> dict:
        logits, boxes = self(feats)
        labels, target = self._targets(data_samples, logits.device)
        pred_xyxy = box_convert(boxes, 'cxcywh', 'xyxy')
        target_xyxy = box_convert(target, 'cxcywh', 'xyxy')
        losses = dict(
            loss_cls=self.loss_cls(logits, labels, avg_factor=len(labels)),
            loss_l1=self.l1_weight * F.l1_loss(boxes, target, reduction='sum') / len(labels),
            loss_giou=self.giou_weight * generalized_box_iou_loss(pred_xyxy, target_xyxy, reduction='mean'))
        with torch.no_grad():  # logged, not optimised (mmengine sums only keys containing "loss")
            losses['train_iou'] = box_iou(pred_xyxy, target_xyxy).diagonal().mean()
            losses['train_top1'] = (logits.argmax(1) == labels).float().mean() * 100
        return losses

    def predict(self, feats: Tuple[torch.Tensor], data_samples: Optional[List[DataSample]] = None
                ) -> List[DataSample]:
        logits, boxes = self(feats)
        scores = F.softmax(logits, dim=1)
        if data_samples is None:
            raise ValueError('ClsLocHead.predict needs data samples with img_shape (ClsLocModel.predict makes them)')
        out = []
        for score, box, ds in zip(scores, boxes, data_samples):
            ds = ds if ds is not None else DataSample()
            ds.set_pred_score(score).set_pred_label(score.argmax(0, keepdim=True))
            ds.set_field(self.to_original_pixels(box, ds.metainfo), 'pred_box')
            out.append(ds)
        return out

    @staticmethod
    def to_original_pixels(box: torch.Tensor, meta: dict) -> torch.Tensor:
        """Normalised ``(cx, cy, w, h)`` -> xyxy pixels of the original image (undo flip, then resize)."""
        h, w = meta['img_shape'][:2]
        x1, y1, x2, y2 = (box_convert(box[None], 'cxcywh', 'xyxy')[0] * box.new_tensor([w, h, w, h])).unbind()
        if meta.get('flip', False):
            direction = meta.get('flip_direction', 'horizontal')
            if direction in ('horizontal', 'diagonal'):
                x1, x2 = w - x2, w - x1
            if direction in ('vertical', 'diagonal'):
                y1, y2 = h - y2, h - y1
        xyxy = torch.stack([x1, y1, x2, y2])
        scale = meta.get('scale_factor')
        if scale is not None:
            sx, sy = (float(scale), float(scale)) if isinstance(scale, (int, float)) else map(float, scale[:2])
            xyxy = xyxy / xyxy.new_tensor([sx, sy, sx, sy])
        ori = meta.get('ori_shape', meta['img_shape'])
        oh, ow = ori[:2]
        return torch.stack([xyxy[0].clamp(0, ow), xyxy[1].clamp(0, oh), xyxy[2].clamp(0, ow),
                            xyxy[3].clamp(0, oh)]).detach()
