"""Teacher targets for the [CLS] and patch losses (EMA centering or Sinkhorn-Knopp) and the losses' common base."""
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

CENTERINGS = ('centering', 'sinkhorn_knopp')


def _dist_ready() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@torch.no_grad()
def sinkhorn_knopp(logits: torch.Tensor, temp: float, n_iters: int = 3) -> torch.Tensor:
    """Doubly-normalised teacher targets (SwAV/DINOv2); rows sum to 1.

    Distributed: every rank's rows are one matrix. The shift before ``exp`` is the max over ALL ranks
    (one constant cancels in the first normalisation; a per-rank constant would reweigh the ranks' rows
    against each other), the sample count is the all-reduced number of rows (ranks may hold different
    numbers of masked tokens), and a rank with no rows still joins every collective, in the same order.
    """
    dist_on = _dist_ready()
    q = logits.float() / temp
    shift = q.max() if q.numel() else q.new_tensor(float('-inf'))
    count = q.new_tensor(float(q.shape[0]))
    if dist_on:
        dist.all_reduce(shift, op=dist.ReduceOp.MAX)
        dist.all_reduce(count)
    if not dist_on and q.shape[0] == 0:  # no rows (decided on the host: no value is read back)
        return q.clone()
    # distributed with no rows on any rank: every rank holds an empty q, so the steps below are empty too
    q = torch.exp(q - shift).t()  # (K, B_rank)
    n_protos = q.shape[0]
    total = q.sum()
    if dist_on:
        dist.all_reduce(total)
    q /= total
    for _ in range(n_iters):
        rows = q.sum(dim=1, keepdim=True)
        if dist_on:
            dist.all_reduce(rows)
        q /= rows
        q /= n_protos
        q /= q.sum(dim=0, keepdim=True)
        q /= count
    q *= count
    return q.t()


class TeacherCentering(nn.Module):
    """Holds the ``center`` buffer and turns teacher logits into target probabilities."""

    def __init__(self, out_dim: int, center_momentum: float = 0.9, centering: str = 'centering'):
        super().__init__()
        if centering not in CENTERINGS:
            raise ValueError(f'centering must be one of {CENTERINGS}, got {centering!r}')
        self.centering = centering
        self.center_momentum = center_momentum
        self.register_buffer('center', torch.zeros(1, out_dim))

    @torch.no_grad()
    def targets(self, teacher_logits: torch.Tensor, teacher_temp: float) -> torch.Tensor:
        if self.centering == 'sinkhorn_knopp':
            return sinkhorn_knopp(teacher_logits, teacher_temp)
        return F.softmax((teacher_logits.float() - self.center) / teacher_temp, dim=-1)

    @torch.no_grad()
    def update(self, teacher_logits: torch.Tensor) -> None:
        """EMA of the batch centre, after the targets were computed: each rank's mean of its rows, averaged over
        the ranks (DINOv2's ``reduce_center_update`` of the iBOT loss; for the [CLS] rows, equal in number on
        every rank, this is also the mean of all rows, as its DINO loss).

        Every rank must call this once per step, even with no rows (no masked tokens here), or the
        all-reduce would wait forever; a rank without rows is left out of the average (DINOv2's would be
        NaN), and a step with no rows on any rank leaves the centre unchanged. No host synchronisation.
        """
        rows = teacher_logits.float()
        local_mean = rows.mean(dim=0) if rows.shape[0] else rows.new_zeros(rows.shape[1])
        has_rows = rows.new_tensor([float(rows.shape[0] > 0)])
        stats = torch.cat([local_mean, has_rows])[None]  # one all-reduce for the means and the rank count
        if _dist_ready():
            dist.all_reduce(stats)
        means_sum, ranks = stats[:, :-1], stats[:, -1:]
        updated = self.center * self.center_momentum + means_sum / ranks.clamp_min(1) * (1 - self.center_momentum)
        self.center.copy_(torch.where(ranks > 0, updated, self.center))


class DistillationLoss(nn.Module):
    """The common part of the [CLS] and patch losses: the student temperature, and the teacher's targets with
    their centre. Subclasses say which student rows meet which targets (``row_targets``, or the targets as they
    are) and how the rows' cross-entropies make the loss (``reduce``)."""

    def __init__(self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9,
                 centering: str = 'centering'):
        super().__init__()
        self.student_temp = student_temp
        self.centering = TeacherCentering(out_dim, center_momentum, centering)

    @property
    def center(self) -> torch.Tensor:
        return self.centering.center

    @torch.no_grad()
    def teacher_targets(self, teacher_logits: torch.Tensor, teacher_temp: float) -> torch.Tensor:
        """Targets of the teacher's rows, then the centre update (as DINO does). Every rank calls this, with or
        without rows: the collectives of Sinkhorn-Knopp and of the centre update must run everywhere."""
        targets = self.centering.targets(teacher_logits, teacher_temp)
        self.centering.update(teacher_logits)
        return targets
