"""PosFieldSSL: DINOv2-style self-distillation with crop-aligned position fields and dual masked prediction."""
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.logging import MessageHub
from mmpretrain.models.selfsup import BaseSelfSupervisor
from mmpretrain.registry import MODELS

from ...batch.multiview_batch import MultiViewBatch
from ..heads import head_losses, masked_position_accuracy
from .ema_teacher import EMATeacher, cosine_momentum, linear_warmup


def _patch_size(backbone: nn.Module) -> int:
    kernel = backbone.patch_embed.projection.kernel_size
    return int(kernel[0] if isinstance(kernel, (tuple, list)) else kernel)


@MODELS.register_module()
class PosFieldSSL(BaseSelfSupervisor):
    """The ICML 2025 method (Liu, Suganuma, Okatani) on mmpretrain.

    Student: ``backbone`` (:class:`PosFieldViT`) + ``neck`` (:class:`DINOProjectionNeck`, shared by [CLS] and
    patches unless ``patch_neck`` is given). Teacher: an EMA copy of both (``teacher.module.backbone.*``).

    Inputs: a :class:`MultiViewBatch` built in the dataloader workers by ``multiview_collate`` (views grouped by
    size, canvas boxes, flips, content / position masks, patch-loss weights and the indices of the masked tokens)
    and normalised on the device by :class:`MultiViewDataPreprocessor`. ``loss`` reads top-down: teacher
    targets, student predictions, losses; diagnostics come from :meth:`_diagnostics`. The step selects tokens
    with the batch's index tensors and Python counts and reads its logged values back to the host once, at
    its end (docs/design.md, contract 2).

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
        self._host_step = (None, 0)  # ((storage, version) of the step buffer, its value): read when it changed

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
        step = self.completed_steps() if step is None else step
        max_iters, per_epoch = self.train_length()
        return dict(
            teacher_temp=linear_warmup(step, int(self.teacher_temp_warmup_epochs * per_epoch), self.teacher_temp),
            momentum=cosine_momentum(step, max_iters, *self.momentum),
            prototypes_frozen=float(step < self.freeze_prototypes_epochs * per_epoch))

    def completed_steps(self) -> int:
        """The ``step`` buffer as a Python int, read back from the device only when the buffer was changed from
        outside (loading a checkpoint, a test's ``fill_``): the tensor's version counter tells, without a read."""
        key, value = self._host_step
        if key != self._step_key():
            value = int(self.step)
            self._host_step = (self._step_key(), value)
        return value

    def _step_key(self):
        return self.step.data_ptr(), self.step._version

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
            self.optimizer_step(optim_wrapper)
            for group, lr in zip(groups, saved_lr):
                group['lr'] = lr  # the lr schedulers' chained values continue from the scheduled lr
            with torch.no_grad():
                for p, value in zip(shared, saved):
                    p.copy_(value)  # the same as lr 0 for prototypes in a group with other parameters
            step = self.completed_steps()
            self.step += 1
            self._host_step = (self._step_key(), step + 1)
            self.teacher.update(self._student(), sched['momentum'])
        return self.read_log_vars(log_vars)

    @staticmethod
    def optimizer_step(optim_wrapper) -> None:
        """The optimiser's step (gradient clipping and AMP's overflow check read values back here, as in mmengine)."""
        optim_wrapper.step()
        optim_wrapper.zero_grad()

    @staticmethod
    def read_log_vars(log_vars: Dict[str, torch.Tensor]) -> Dict[str, float]:
        """Every logged value in ONE device-to-host transfer: the step's only read of its results (mmengine's
        message hub and :class:`NonFiniteLossHook` then read Python floats)."""
        tensors = {k: v for k, v in log_vars.items() if isinstance(v, torch.Tensor)}
        values = dict(log_vars)
        if tensors:
            stacked = torch.stack([v.detach().float().reshape(()) for v in tensors.values()])
            values.update(zip(tensors, stacked.tolist()))
        return values

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
        batch = self._checked(inputs)
        sched = self.schedule()
        cls_targets, patch_targets = self._teacher_targets(batch, sched['teacher_temp'])
        logits, n_cls, global_cls = self._student_predictions(batch)

        b = batch.batch_size
        # the heads' rows of the one head output ([CLS], then content, then position rows): one cross-entropy call
        losses = head_losses(logits, [self.cls_head.loss_rows(cls_targets.split(b), n_views=n_cls // b),
                                      self.head.loss_rows(patch_targets, batch.n_content, batch.masked_weights)])
        losses['loss_koleo'] = self.koleo_weight * sum(self.koleo(c) for c in global_cls.split(b))
        losses.update(self._diagnostics(batch, sched, cls_targets, logits.detach()[n_cls:], patch_targets))
        return losses

    def _checked(self, inputs) -> MultiViewBatch:
        """``inputs``, once it is known to be a :class:`MultiViewBatch` masked on the backbone's patch grid."""
        if not isinstance(inputs, MultiViewBatch):
            raise TypeError(f"PosFieldSSL.loss expects a MultiViewBatch (train_dataloader.collate_fn type "
                            f"'multiview_collate', model.data_preprocessor type 'MultiViewDataPreprocessor'), got "
                            f'{type(inputs).__name__}')
        grid = tuple(s // _patch_size(self.backbone) for s in inputs.global_views.shape[-2:])
        if tuple(inputs.content_masks.shape[-2:]) != grid:
            raise ValueError(f'the batch masks a {tuple(inputs.content_masks.shape[-2:])} patch grid but the '
                             f'backbone cuts the global views into {grid}: set train_dataloader.collate_fn.'
                             f'patch_size to the backbone\'s patch size ({_patch_size(self.backbone)})')
        return inputs

    def _heads(self, part: nn.ModuleDict, cls: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        """Prototype logits of the [CLS] rows then the masked patch rows, ``(rows, K)`` (the neck's fp32): ONE call when
        the neck is shared (the loss takes the whole tensor, so its backward needs no concatenation)."""
        if 'patch_neck' in part:
            return torch.cat([part['neck'](cls), part['patch_neck'](patches)])
        return part['neck'](torch.cat([cls, patches]))

    @staticmethod
    def _masked_rows(kept: torch.Tensor, batch: MultiViewBatch) -> torch.Tensor:
        """The content-masked then the position-masked patch tokens, from ``kept`` = the ``kept_rows`` patches."""
        return kept.index_select(0, batch.masked_in_kept)

    @staticmethod
    def _keep(batch: MultiViewBatch) -> dict:
        """The backbone's ``keep_patches`` arguments: the masked patches, as flat indices with their bound."""
        return dict(keep_patches=batch.kept_rows, keep_max_per_view=batch.max_kept_per_view)

    def _teacher_targets(self, batch: MultiViewBatch, temp: float):
        """Teacher targets of the global views' [CLS] and of the masked patches (content rows first).

        The backbone runs under ``inference_mode`` and only the [CLS] and masked patch tokens leave it (cloned
        into ordinary tensors, as targets enter the student's autograd graph); the heads run under no_grad.
        """
        teacher = self.teacher.module
        with torch.inference_mode():
            cls, kept = teacher['backbone'].forward_tokens(batch.global_views, batch.global_boxes,
                                                           batch.global_flips, **self._keep(batch))
            masked = self._masked_rows(kept, batch)
        with torch.no_grad():
            cls_logits, patch_logits = self._heads(teacher, cls.clone(), masked.clone()).split(
                [cls.shape[0], masked.shape[0]])
            return (self.cls_head.targets(cls_logits, temp), self.head.targets(patch_logits, temp))

    def _student_predictions(self, batch: MultiViewBatch):
        """Student logits of every view's [CLS] (globals first) then of the masked patches (content rows first)
        in one tensor, the number of [CLS] rows, and the global views' [CLS] tokens (KoLeo)."""
        # The last layer computes only the masked patches and the [CLS] tokens. No position mask at all when no
        # token is position-masked (the same tokens; the baseline, which has no position masking, needs None).
        pos_mask = batch.pos_masks if batch.n_pos else None
        # one pass over the global views and every size of local views (unmasked, [CLS] only)
        (global_cls, kept), *local = self.backbone.forward_token_groups(
            [dict(x=batch.global_views, boxes=batch.global_boxes, flips=batch.global_flips,
                  content_mask=batch.content_masks, pos_mask=pos_mask, **self._keep(batch))]
            + [dict(x=views, boxes=boxes, flips=flips, cls_only=True)
               for views, boxes, flips in zip(batch.local_views, batch.local_boxes, batch.local_flips)])
        local_cls = [cls for cls, _ in local]
        masked = self._masked_rows(kept, batch)
        all_cls = torch.cat([global_cls, *local_cls])
        return self._heads(self._student(), all_cls, masked), all_cls.shape[0], global_cls

    @torch.no_grad()
    def _diagnostics(self, batch: MultiViewBatch, sched: dict, cls_targets, patch_logits, patch_targets):
        """Logged, not summed (no 'loss' in the keys). ``patch_logits`` / ``patch_targets``: content rows first."""
        pos_rows = slice(batch.n_content, None)
        return dict(
            teacher_entropy=-(cls_targets * cls_targets.clamp_min(1e-12).log()).sum(-1).mean(),
            center_norm=self.cls_head.center.norm(),
            pos_acc=masked_position_accuracy(patch_logits[pos_rows], patch_targets[pos_rows]),
            teacher_temp=cls_targets.new_full((), sched['teacher_temp']),
            momentum=cls_targets.new_full((), sched['momentum']),
            masked_content=batch.content_masks.float().mean(),
            masked_pos=batch.pos_masks.float().mean())
