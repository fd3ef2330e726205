"""Layer-wise lr decay for the detector: block i of the ViT gets ``lr * decay ** (L + 1 - depth)``."""
from mmdet.registry import OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor

NO_DECAY_KEYS = ('pos_field', 'pos_embed')


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class ViTLayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """``paramwise_cfg=dict(layer_decay_rate=0.7)``: depths come from ``model.backbone.get_layer_depth`` (the
    necks and heads are the last depth, lr x 1). 1-D parameters (norms, biases, layer scales) and position
    embeddings get no weight decay (ViTDet / MAE fine-tuning recipe)."""

    def add_params(self, params, module, prefix='', **kwargs):
        rate = self.paramwise_cfg.get('layer_decay_rate', 1.0)
        backbone = module.backbone
        groups = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            depth, num = backbone.get_layer_depth(name, 'backbone.')
            no_decay = param.ndim == 1 or any(k in name for k in NO_DECAY_KEYS)
            key = (depth, no_decay)
            if key not in groups:
                groups[key] = dict(params=[], lr=self.base_lr * rate ** (num - 1 - depth),
                                   weight_decay=0.0 if no_decay else self.base_wd)
            groups[key]['params'].append(param)
        params.extend(groups[k] for k in sorted(groups))
        print_log(f'layer decay {rate}: {len(groups)} parameter groups', logger='current')
