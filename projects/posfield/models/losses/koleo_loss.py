"""KoLeo regulariser (Sablayrolles et al.; DINOv2): spreads features by their nearest-neighbour distance."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.registry import MODELS


@MODELS.register_module()
class KoLeoLoss(nn.Module):
    """``-mean_i log(min_{j != i} ||x_i - x_j|| + eps)`` on L2-normalised features, in fp32.

    Fewer than two samples give 0 (DINOv2 #143: small batches produce inf without the guards).
    """

    def __init__(self, eps: float = 1e-8):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] < 2:
            return x.float().sum() * 0.0
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = F.normalize(x.float(), dim=-1, eps=self.eps)
            with torch.no_grad():  # pick the neighbour without gradient, then measure it with one
                sim = x @ x.t()
                sim.fill_diagonal_(-2.0)
                nn_idx = sim.argmax(dim=1)
            dist = (x - x[nn_idx]).norm(dim=-1)
            return -torch.log(dist + self.eps).mean()
