"""One layer-wise lr decay constructor for pre-training (mmpretrain) and detection (mmdet).

The class is defined here without registering it; :mod:`projects.posfield.engine` registers it in mmpretrain's
``OPTIM_WRAPPER_CONSTRUCTORS`` and :mod:`projects.posfield.det` in mmdet's, so both configs name the same code
(``constructor='ViTLayerDecayOptimWrapperConstructor'``).
"""
from typing import Callable, List, Optional

import torch.nn as nn
from mmpretrain.engine.optimizers.layer_decay_optim_wrapper_constructor import \
    LearningRateDecayOptimWrapperConstructor


class ViTLayerDecayOptimWrapperConstructor(LearningRateDecayOptimWrapperConstructor):
    """mmpretrain's layer-decay constructor (BEiT/MAE fine-tuning recipe) for any model with a ViT backbone.

    ``paramwise_cfg``:

    * ``layer_decay_rate``: block ``i`` of an ``L``-block backbone gets ``lr * rate ** (L + 1 - depth)`` with the
      stem (patch embedding, positions and tokens) at depth 0, block ``i`` at ``i + 1`` and everything after the
      backbone (final norm, necks, heads) at ``L + 1`` (lr x 1). Depths come from ``model.get_layer_depth`` (an
      mmpretrain self-supervised model) or else ``model.backbone.get_layer_depth(name, 'backbone.')`` (a detector).
    * ``custom_keys`` (``decay_mult``), ``norm_decay_mult``, ``bias_decay_mult``, ``flat_decay_mult``: weight
      decay as in mmpretrain's constructor.
    * ``patch_embed_lr_mult``: an extra lr factor for every parameter whose name contains ``patch_embed``
      (DINOv2's ``patch_embed_lr_mult``).

    Frozen parameters (an EMA teacher) get no group.
    """

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '',
                   get_layer_depth: Optional[Callable] = None, **kwargs) -> None:
        if prefix == '' and get_layer_depth is None and not hasattr(module, 'get_layer_depth'):
            backbone = getattr(module, 'backbone', None)
            if not hasattr(backbone, 'get_layer_depth'):
                raise NotImplementedError(f'layer-wise lr decay needs {type(module).__name__}.get_layer_depth or a '
                                          f'backbone with get_layer_depth (got {type(backbone).__name__})')

            def get_layer_depth(name):
                return backbone.get_layer_depth(name, 'backbone.')

        super().add_params(params, module, prefix=prefix, get_layer_depth=get_layer_depth, **kwargs)
        if prefix != '':
            return
        mult = self.paramwise_cfg.get('patch_embed_lr_mult', 1.0)
        for group in params:
            if 'patch_embed' in group['param_name']:
                group['lr'] *= mult
                group['lr_scale'] *= mult
