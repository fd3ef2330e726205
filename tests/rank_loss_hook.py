"""Test-only hook: after each train iteration every rank prints the loss averaged over ranks."""
import torch
import torch.distributed as dist
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class LogLossEveryRankHook(Hook):

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        loss = torch.tensor([float(outputs['loss'])])  # train_step returns the logged values as floats
        dist.all_reduce(loss)
        loss /= dist.get_world_size()
        # the teacher must be identical on both ranks too (same synced student, same EMA)
        p = next(runner.model.module.teacher.parameters()).detach().clone().sum().reshape(1)
        p_max = p.clone()
        dist.all_reduce(p_max, op=dist.ReduceOp.MAX)
        assert torch.equal(p, p_max), 'teachers diverged across ranks'
        print(f'RANKLOSS rank={dist.get_rank()} iter={runner.iter} loss={loss.item():.8f}', flush=True)
