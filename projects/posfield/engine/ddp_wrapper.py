"""DDP wrapper that lets the algorithm own its optimisation step.

mmengine's ``MMDistributedDataParallel.train_step`` calls ``optim_wrapper.update_params`` itself, so a
model's own ``train_step`` (prototype freezing, teacher EMA after the optimiser step) would be skipped
under DDP. This wrapper hands the step to the model and passes itself as the forward module, so the
forward still runs through DDP and gradients are synchronised.
"""
from mmengine.model import MMDistributedDataParallel

# Registered in mmengine's root registry: Runner.wrap_model looks the type up there, without the default scope.
from mmengine.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class SSLDistributedDataParallel(MMDistributedDataParallel):

    def train_step(self, data, optim_wrapper):
        return self.module.train_step(data, optim_wrapper, forward_module=self)
