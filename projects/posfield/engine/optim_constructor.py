"""Layer-wise lr decay plus a patch-embedding lr multiplier (DINOv2's ``patch_embed_lr_mult``)."""
from mmpretrain.engine.optimizers import LearningRateDecayOptimWrapperConstructor
from mmpretrain.registry import OPTIM_WRAPPER_CONSTRUCTORS


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class PosFieldOptimWrapperConstructor(LearningRateDecayOptimWrapperConstructor):
    """mmpretrain's layer-decay constructor (``paramwise_cfg.layer_decay_rate``, ``custom_keys`` with
    ``decay_mult``, ``norm_decay_mult``, ``flat_decay_mult``) with ``paramwise_cfg.patch_embed_lr_mult``
    applied on top to every parameter whose name contains ``patch_embed``. Frozen parameters (the EMA
    teacher) are skipped by the parent class."""

    def add_params(self, params, module, prefix='', get_layer_depth=None, **kwargs):
        super().add_params(params, module, prefix=prefix, get_layer_depth=get_layer_depth, **kwargs)
        if prefix != '':
            return
        mult = self.paramwise_cfg.get('patch_embed_lr_mult', 1.0)
        for group in params:
            if 'patch_embed' in group['param_name']:
                group['lr'] *= mult
                group['lr_scale'] *= mult
