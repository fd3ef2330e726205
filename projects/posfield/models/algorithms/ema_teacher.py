"""The EMA teacher and the schedules that drive it (pure functions of the optimisation step)."""
import copy
import math
from typing import Tuple

import torch
import torch.nn as nn


class EMATeacher(nn.Module):
    """A frozen copy of the student (``self.module``), updated as ``t <- m * t + (1 - m) * s``.

    ``m`` is written in DINO's convention (0.992 -> 1.0: the weight of the OLD teacher). mmengine's
    ``ExponentialMovingAverage`` uses the opposite convention (its ``momentum`` weighs the NEW
    parameters), which is how mmpretrain's community DINO ended up inverted; this class avoids it.
    """

    def __init__(self, student: nn.Module):
        super().__init__()
        self.module = copy.deepcopy(student)
        self.module.requires_grad_(False)
        self.module.eval()

    @torch.no_grad()
    def copy_from(self, student: nn.Module) -> None:
        self.module.load_state_dict(student.state_dict())

    @torch.no_grad()
    def update(self, student: nn.Module, momentum: float) -> None:
        t_params = list(self.module.parameters())
        s_params = list(student.parameters())
        if len(t_params) != len(s_params):
            raise RuntimeError('teacher and student have different parameter lists')
        torch._foreach_mul_(t_params, momentum)
        torch._foreach_add_(t_params, [p.detach() for p in s_params], alpha=1.0 - momentum)
        for t_buf, s_buf in zip(self.module.buffers(), student.buffers()):
            t_buf.copy_(s_buf)

    def train(self, mode: bool = True):
        # The teacher always runs in eval mode: no drop-path or dropout in the targets (DINO builds its
        # teacher without drop-path). The ViT has no batch-norm, so nothing else depends on the mode.
        super().train(mode)
        self.module.eval()
        return self


def cosine_momentum(step: int, max_iters: int, start: float, end: float) -> float:
    """DINO's teacher momentum: ``end - (end - start) * (cos(pi * step / max_iters) + 1) / 2``."""
    progress = min(max(step / max(max_iters, 1), 0.0), 1.0)
    return end - (end - start) * (math.cos(math.pi * progress) + 1) / 2


def linear_warmup(step: int, warmup_iters: int, value: Tuple[float, float]) -> float:
    """``value[0] -> value[1]`` linearly over ``warmup_iters`` steps, then constant."""
    if warmup_iters <= 0 or step >= warmup_iters:
        return float(value[1])
    return value[0] + (value[1] - value[0]) * step / warmup_iters
