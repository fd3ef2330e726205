"""One layer-wise lr decay constructor for pre-training (mmpretrain) and detection (mmdet).

The class is defined here without registering it; :mod:`projects.posfield.engine` registers it in mmpretrain's
``OPTIM_WRAPPER_CONSTRUCTORS`` and :mod:`projects.posfield.det` in mmdet's, so both configs name the same code
(``constructor='ViTLayerDecayOptimWrapperConstructor'``).
"""
from typing import Callable, Dict, List, Optional

import torch
import torch.nn as nn
from mmpretrain.engine.optimizers.layer_decay_optim_wrapper_constructor import LearningRateDecayOptimWrapperConstructor


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

    ``optim_wrapper.clip_grad.per_module=True`` clips the gradients of each top-level child module of the model
    (for :class:`PosFieldSSL`: the student's backbone, neck and patch neck) separately to ``max_norm``, as DINOv2
    clips its student's backbone and each head (``train.py``: ``v.clip_grad_norm_`` for each student module);
    mmengine's clipping takes one global norm over all parameters. The logged ``grad_norm`` is then the global norm
    before clipping.

    Frozen parameters (an EMA teacher) get no group.
    """

    def __call__(self, model: nn.Module):
        clip = self.optim_wrapper_cfg.get('clip_grad')
        per_module = bool(clip and clip.get('per_module', False))
        if clip and 'per_module' in clip:
            self.optim_wrapper_cfg = dict(self.optim_wrapper_cfg,
                                          clip_grad={k: v for k, v in clip.items() if k != 'per_module'})
        wrapper = super().__call__(model)
        if per_module:
            if getattr(wrapper, 'grad_name', 'grad_norm') != 'grad_norm':
                raise ValueError("optim_wrapper.clip_grad.per_module needs clip_grad type='norm'")
            module = getattr(model, 'module', model)
            groups = {name: [p for p in child.parameters() if p.requires_grad]
                      for name, child in module.named_children()}
            groups = {name: params for name, params in groups.items() if params}
            wrapper._clip_grad = lambda: clip_grad_per_module(wrapper, groups)  # replaces mmengine's global clip
        return wrapper

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


def clip_grad_per_module(wrapper, groups: Dict[str, List[nn.Parameter]]) -> None:
    """Clip each module's gradients to the wrapper's ``clip_grad`` kwargs on their own norm (DINOv2)."""
    norms = []
    for params in groups.values():
        params = [p for p in params if p.grad is not None]
        if params:
            norms.append(wrapper.clip_func(params, **wrapper.clip_grad_kwargs))
    if norms:
        wrapper.message_hub.update_scalar('train/grad_norm', float(torch.stack(norms).norm()))
