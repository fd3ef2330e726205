"""PosFieldSSL: DINOv2-style self-distillation with crop-aligned position fields and dual masked prediction."""
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.logging import MessageHub
from mmpretrain.models.selfsup import BaseSelfSupervisor
from mmpretrain.registry import MODELS

from ..data_preprocessor import MultiViewBatch
from ..heads.dual_mim_head import masked_position_accuracy
from ..losses.soft_cross_entropy import soft_cross_entropy
from .ema_teacher import EMATeacher, cosine_momentum, linear_warmup


def _patch_size(backbone: nn.Module) -> int:
    kernel = backbone.patch_embed.projection.kernel_size
    return int(kernel[0] if isinstance(kernel, (tuple, list)) else kernel)


@MODELS.register_module()
class PosFieldSSL(BaseSelfSupervisor):
    """The ICML 2025 method (Liu, Suganuma, Okatani) on mmpretrain.

    Student: ``backbone`` (:class:`PosFieldViT`) + ``neck`` (:class:`DINOProjectionNeck`, shared by [CLS] and
    patches unless ``patch_neck`` is given). Teacher: an EMA copy of both (``teacher.module.backbone.*``).

    Inputs: a :class:`MultiViewBatch` built by :class:`MultiViewDataPreprocessor` (views grouped by size,
    canvas boxes, flips, content / position masks and patch-loss weights). ``loss`` reads top-down: teacher
    targets, student predictions, losses; diagnostics come from :meth:`_diagnostics`.

    Losses: ``loss_image`` (DINO on [CLS]), ``loss_content`` / ``loss_pos`` (:class:`DualMIMHead` on the
    content- / position-masked tokens only), ``loss_koleo``. Schedules (teacher momentum, teacher
    temperature, prototype freezing) are pure functions of the ``step`` buffer (completed optimiser steps,
    saved in checkpoints) and the training length, so resuming restores them exactly.

    Args:
        neck / patch_neck: their ``in_channels`` default to the backbone's width (``backbone.embed_dims``).
        momentum: (start, end) teacher momentum, cosine over training, DINO convention.
        teacher_temp: (start, end) teacher temperature, linear over ``teacher_temp_warmup_epochs``.
        freeze_prototypes_epochs: the prototypes' lr is 0 for this many epochs (DINOv2's
            ``freeze_last_layer_epochs``: no update, while AdamW's moments accumulate).
        max_iters / iters_per_epoch: training length; taken from the runner's MessageHub when None.
    """

    def __init__(self, backbone: dict, neck: dict, head: dict, cls_head: dict,
                 patch_neck: Optional[dict] = None, koleo_loss: Optional[dict] = None,
                 koleo_weight: float = 0.1, momentum: Tuple[float, float] = (0.992, 1.0),
                 teacher_temp: Tuple[float, float] = (0.04, 0.07), teacher_temp_warmup_epochs: float = 30,
                 freeze_prototypes_epochs: float = 1, max_iters: Optional[int] = None,
                 iters_per_epoch: Optional[int] = None, data_preprocessor: Optional[dict] = None,
                 init_cfg=None):
        if data_preprocessor is None or isinstance(data_preprocessor, dict):
            data_preprocessor = {'type': 'MultiViewDataPreprocessor', **(data_preprocessor or {})}
        super().__init__(backbone=backbone, neck=None, head=head, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        width = self.backbone.embed_dims
        if getattr(self.data_preprocessor, 'patch_size', 0) is None:  # the mask grid is the backbone's
            self.data_preprocessor.patch_size = _patch_size(self.backbone)
        self.neck = MODELS.build(self._neck_cfg(neck, width, 'neck'))
        self.cls_head = MODELS.build(cls_head)
        self.patch_neck = MODELS.build(self._neck_cfg(patch_neck, width, 'patch_neck')) if patch_neck else None
        self.koleo = MODELS.build(koleo_loss or dict(type='KoLeoLoss'))
        self.koleo_weight = koleo_weight
        self.momentum = tuple(momentum)
        self.teacher_temp = tuple(teacher_temp)
        self.teacher_temp_warmup_epochs = teacher_temp_warmup_epochs
        self.freeze_prototypes_epochs = freeze_prototypes_epochs
        self._max_iters = max_iters
        self._iters_per_epoch = iters_per_epoch
        self.teacher = EMATeacher(self._student())
        self.register_buffer('step', torch.zeros((), dtype=torch.long))

    # ----------------------------------------------------------------------------------- structure
    @staticmethod
    def _neck_cfg(cfg: dict, width: int, name: str) -> dict:
        """The neck reads the backbone's tokens: ``in_channels`` follows the backbone unless given."""
        cfg = dict(cfg)
        given = cfg.get('in_channels')
        if given is None:
            cfg['in_channels'] = width
        elif int(given) != width:
            raise ValueError(f'model.{name}.in_channels={given} but the backbone is {width}-d; leave '
                             f'in_channels unset (None) to follow the backbone')
        return cfg

    def _student(self) -> nn.ModuleDict:
        parts = dict(backbone=self.backbone, neck=self.neck)
        if self.patch_neck is not None:
            parts['patch_neck'] = self.patch_neck
        return nn.ModuleDict(parts)

    def init_weights(self):
        super().init_weights()
        self.teacher.copy_from(self._student())  # the teacher starts as the initialised student

    # ----------------------------------------------------------------------------------- schedules
    def set_train_length(self, max_iters: int, iters_per_epoch: int) -> None:
        """Training length for the schedules (tests and scripts outside a Runner)."""
        self._max_iters, self._iters_per_epoch = int(max_iters), int(iters_per_epoch)

    def train_length(self) -> Tuple[int, int]:
        if self._max_iters is not None and self._iters_per_epoch is not None:
            return self._max_iters, self._iters_per_epoch
        hub = MessageHub.get_current_instance()
        max_iters = self._max_iters or hub.get_info('max_iters')
        max_epochs = hub.get_info('max_epochs')
        if max_iters is None:
            raise RuntimeError('PosFieldSSL needs the training length for its schedules: run it in an mmengine '
                               'Runner, or pass max_iters / iters_per_epoch, or call set_train_length()')
        per_epoch = self._iters_per_epoch or max(int(max_iters) // max(int(max_epochs or 1), 1), 1)
        return int(max_iters), per_epoch

    def schedule(self, step: Optional[int] = None) -> Dict[str, float]:
        """Teacher temperature, teacher momentum and whether the prototypes are frozen at ``step``."""
        step = int(self.step) if step is None else step
        max_iters, per_epoch = self.train_length()
        return dict(
            teacher_temp=linear_warmup(step, int(self.teacher_temp_warmup_epochs * per_epoch), self.teacher_temp),
            momentum=cosine_momentum(step, max_iters, *self.momentum),
            prototypes_frozen=float(step < self.freeze_prototypes_epochs * per_epoch))

    # ----------------------------------------------------------------------------------- training
    def train_step(self, data, optim_wrapper, forward_module: Optional[nn.Module] = None):
        """Forward, backward, prototype freezing (lr 0), optimiser step, then the teacher update.

        ``forward_module`` is the DDP wrapper when distributed (:class:`SSLDistributedDataParallel`), so the
        forward runs through it and gradients are synchronised.
        """
        fwd = forward_module if forward_module is not None else self
        with optim_wrapper.optim_context(fwd):
            data = self.data_preprocessor(data, True)
            losses = fwd._run_forward(data, mode='loss')
        parsed, log_vars = self.parse_losses(losses)
        optim_wrapper.backward(optim_wrapper.scale_loss(parsed))
        if optim_wrapper.should_update():
            sched = self.schedule()
            groups, shared = self._prototype_groups(optim_wrapper) if sched['prototypes_frozen'] else ([], [])
            saved_lr = [group['lr'] for group in groups]
            saved = [p.detach().clone() for p in shared]
            for group in groups:
                group['lr'] = 0.0  # DINOv2's last-layer lr schedule: no update, but AdamW's moments accumulate
            optim_wrapper.step()
            for group, lr in zip(groups, saved_lr):
                group['lr'] = lr  # the lr schedulers' chained values continue from the scheduled lr
            with torch.no_grad():
                for p, value in zip(shared, saved):
                    p.copy_(value)  # the same as lr 0 for prototypes in a group with other parameters
            optim_wrapper.zero_grad()
            self.step += 1
            self.teacher.update(self._student(), sched['momentum'])
        return log_vars

    def _prototype_groups(self, optim_wrapper) -> Tuple[list, list]:
        """The optimiser's parameter groups that hold only the student's prototypes (their lr can be set to 0),
        and the prototypes that share a group with other parameters (restored after the step instead)."""
        protos = {id(p): p for name, p in self.named_parameters()
                  if '.prototypes.' in f'.{name}' and not name.startswith('teacher.') and p.requires_grad}
        groups, shared = [], []
        for group in optim_wrapper.optimizer.param_groups:
            held = [p for p in group['params'] if id(p) in protos]
            if held and len(held) == len(group['params']):
                groups.append(group)
            else:
                shared += held
        return groups, shared

    def extract_feat(self, inputs, data_samples=None, **kwargs):
        if isinstance(inputs, MultiViewBatch):
            inputs = inputs.global_views
        elif isinstance(inputs, (list, tuple)):
            inputs = inputs[0]
        return self.backbone(inputs)

    def loss(self, inputs: MultiViewBatch, data_samples=None, **kwargs) -> Dict[str, torch.Tensor]:
        """DINO [CLS] loss, the two masked-patch losses and KoLeo for one :class:`MultiViewBatch`."""
        if not isinstance(inputs, MultiViewBatch):
            raise TypeError(f'PosFieldSSL.loss expects a MultiViewBatch (model.data_preprocessor type '
                            f"'MultiViewDataPreprocessor'), got {type(inputs).__name__}")
        batch = inputs
        sched = self.schedule()
        content_sel, pos_sel = batch.content_masks.flatten(1), batch.pos_masks.flatten(1)
        n_content = int(content_sel.sum())

        cls_targets, patch_targets = self._teacher_targets(batch, content_sel, pos_sel, sched['teacher_temp'])
        logits, n_cls, global_cls = self._student_predictions(batch, content_sel, pos_sel)

        b, n_pos = batch.batch_size, int(pos_sel.sum())
        n_views, n_targets = n_cls // b, cls_targets.shape[0] // b
        # one cross-entropy call over the whole head output: [CLS] rows, then content rows, then position rows
        ce = soft_cross_entropy(logits, [self.cls_head.row_targets(list(cls_targets.split(b)), n_views),
                                         patch_targets], [self.cls_head.student_temp, self.head.student_temp])
        ce_cls, ce_content, ce_pos = ce.split([n_cls, n_content, n_pos])
        losses = self.cls_head.loss_from_ce(ce_cls, n_views, n_targets)
        losses.update(self.head.loss_from_ce(ce_content, ce_pos, content_weights=batch.mask_weights[content_sel],
                                             pos_weights=batch.mask_weights[pos_sel]))
        losses['loss_koleo'] = self.koleo_weight * sum(self.koleo(c) for c in global_cls.split(b))
        pos_logits = logits.detach()[n_cls + n_content:]
        losses.update(self._diagnostics(batch, sched, cls_targets, pos_logits, patch_targets[n_content:]))
        return losses

    def _heads(self, part: nn.ModuleDict, cls: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        """Prototype logits of the [CLS] rows then the masked patch rows, ``(rows, K)`` (the neck's fp32): ONE call when
        the neck is shared (the loss takes the whole tensor, so its backward needs no concatenation)."""
        if 'patch_neck' in part:
            return torch.cat([part['neck'](cls), part['patch_neck'](patches)])
        return part['neck'](torch.cat([cls, patches]))

    @staticmethod
    def _masked_rows(kept: torch.Tensor, keep: torch.Tensor, content_sel: torch.Tensor, pos_sel: torch.Tensor):
        """The content-masked then the position-masked patch tokens, from ``kept`` = the ``keep`` patches."""
        slot = torch.full(keep.shape, -1, dtype=torch.long, device=keep.device)
        slot[keep] = torch.arange(kept.shape[0], device=keep.device)
        return kept[torch.cat([slot[content_sel], slot[pos_sel]])]

    def _teacher_targets(self, batch: MultiViewBatch, content_sel, pos_sel, temp: float):
        """Teacher targets of the global views' [CLS] and of the masked patches (content rows first).

        The backbone runs under ``inference_mode`` and only the [CLS] and masked patch tokens leave it (cloned
        into ordinary tensors, as targets enter the student's autograd graph); the heads run under no_grad.
        """
        teacher = self.teacher.module
        keep = content_sel | pos_sel
        with torch.inference_mode():
            cls, kept = teacher['backbone'].forward_tokens(batch.global_views, batch.global_boxes,
                                                           batch.global_flips, keep_patches=keep)
            masked = self._masked_rows(kept, keep, content_sel, pos_sel)
        with torch.no_grad():
            cls_logits, patch_logits = self._heads(teacher, cls.clone(), masked.clone()).split(
                [cls.shape[0], masked.shape[0]])
            return (self.cls_head.targets(cls_logits, temp), self.head.targets(patch_logits, temp))

    def _student_predictions(self, batch: MultiViewBatch, content_sel, pos_sel):
        """Student logits of every view's [CLS] (globals first) then of the masked patches (content rows first)
        in one tensor, the number of [CLS] rows, and the global views' [CLS] tokens (KoLeo)."""
        keep = content_sel | pos_sel  # the last layer computes only these patches and the [CLS] tokens
        # one pass over the global views and every size of local views (unmasked, [CLS] only)
        (global_cls, kept), *local = self.backbone.forward_token_groups(
            [dict(x=batch.global_views, boxes=batch.global_boxes, flips=batch.global_flips,
                  content_mask=batch.content_masks, pos_mask=batch.pos_masks, keep_patches=keep)]
            + [dict(x=views, boxes=boxes, flips=flips, cls_only=True)
               for views, boxes, flips in zip(batch.local_views, batch.local_boxes, batch.local_flips)])
        local_cls = [cls for cls, _ in local]
        masked = self._masked_rows(kept, keep, content_sel, pos_sel)
        all_cls = torch.cat([global_cls, *local_cls])
        return self._heads(self._student(), all_cls, masked), all_cls.shape[0], global_cls

    @torch.no_grad()
    def _diagnostics(self, batch: MultiViewBatch, sched: dict, cls_targets, pos_logits, pos_targets):
        """Logged, not summed (no 'loss' in the keys)."""
        device = cls_targets.device
        return dict(
            teacher_entropy=-(cls_targets * cls_targets.clamp_min(1e-12).log()).sum(-1).mean(),
            center_norm=self.cls_head.loss_module.center.norm(),
            pos_acc=masked_position_accuracy(pos_logits.detach(), pos_targets),
            teacher_temp=torch.tensor(sched['teacher_temp'], device=device),
            momentum=torch.tensor(sched['momentum'], device=device),
            masked_content=batch.content_masks.float().mean(),
            masked_pos=batch.pos_masks.float().mean())
