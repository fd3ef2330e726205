"""PosFieldSSL: DINOv2-style self-distillation with crop-aligned position fields and dual masked prediction."""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.logging import MessageHub
from mmpretrain.models.selfsup import BaseSelfSupervisor
from mmpretrain.registry import MODELS

from ..heads.dual_mim_head import masked_position_accuracy
from .ema_teacher import EMATeacher, cosine_momentum, linear_warmup


def _as_tensor(values, device, dtype=None) -> torch.Tensor:
    return torch.stack([torch.as_tensor(v) for v in values]).to(device=device, dtype=dtype)


@MODELS.register_module()
class PosFieldSSL(BaseSelfSupervisor):
    """The ICML 2025 method (Liu, Suganuma, Okatani) on mmpretrain.

    Student: ``backbone`` (:class:`PosFieldViT`) + ``neck`` (:class:`DINOProjectionNeck`, shared by [CLS] and
    patches unless ``patch_neck`` is given). Teacher: an EMA copy of both (``teacher.module.backbone.*``).

    Inputs follow docs/design.md contract 2: ``inputs`` is a list of V view batches, global views first;
    each data sample carries ``view_boxes`` (V, 4), ``view_flips`` (V,), ``content_masks`` and ``pos_masks``
    (G, h, w) for the G global views.

    Losses: ``loss_image`` (DINO on [CLS]), ``loss_content`` / ``loss_pos`` (:class:`DualMIMHead` on the
    content- / position-masked tokens only), ``loss_koleo``. Schedules (teacher momentum, teacher
    temperature, prototype freezing) are pure functions of the ``step`` buffer (completed optimiser steps,
    saved in checkpoints) and the training length, so resuming restores them exactly.

    Args:
        momentum: (start, end) teacher momentum, cosine over training, DINO convention.
        teacher_temp: (start, end) teacher temperature, linear over ``teacher_temp_warmup_epochs``.
        freeze_prototypes_epochs: prototypes get no update (grad set to None) for this many epochs.
        max_iters / iters_per_epoch: training length; taken from the runner's MessageHub when None.
    """

    def __init__(self, backbone: dict, neck: dict, head: dict, cls_head: dict,
                 patch_neck: Optional[dict] = None, koleo_loss: Optional[dict] = None,
                 koleo_weight: float = 0.1, momentum: Tuple[float, float] = (0.992, 1.0),
                 teacher_temp: Tuple[float, float] = (0.04, 0.07), teacher_temp_warmup_epochs: float = 30,
                 freeze_prototypes_epochs: float = 1, max_iters: Optional[int] = None,
                 iters_per_epoch: Optional[int] = None, data_preprocessor: Optional[dict] = None,
                 init_cfg=None):
        super().__init__(backbone=backbone, neck=neck, head=head, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        self.cls_head = MODELS.build(cls_head)
        self.patch_neck = MODELS.build(patch_neck) if patch_neck is not None else None
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
        """Forward, backward, prototype freezing, optimiser step, then the teacher update.

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
            if sched['prototypes_frozen']:
                for name, param in self.named_parameters():
                    if '.prototypes.' in f'.{name}' and not name.startswith('teacher.'):
                        param.grad = None  # no step at all (also no weight decay), as DINO does
            optim_wrapper.step()
            optim_wrapper.zero_grad()
            self.step += 1
            self.teacher.update(self._student(), sched['momentum'])
        return log_vars

    def extract_feat(self, inputs, data_samples=None, **kwargs):
        if isinstance(inputs, (list, tuple)):
            inputs = inputs[0]
        return self.backbone(inputs)

    @staticmethod
    def _group_by_size(inputs: Sequence[torch.Tensor]) -> List[List[int]]:
        """Consecutive views of one resolution go through the backbone in one pass."""
        groups: List[List[int]] = []
        for i, view in enumerate(inputs):
            if groups and inputs[groups[-1][0]].shape[-2:] == view.shape[-2:]:
                groups[-1].append(i)
            else:
                groups.append([i])
        return groups

    def loss(self, inputs: List[torch.Tensor], data_samples, **kwargs) -> Dict[str, torch.Tensor]:
        if not isinstance(inputs, (list, tuple)) or len(inputs) < 2:
            raise ValueError('PosFieldSSL expects a list of >= 2 view batches (global views first)')
        device = inputs[0].device
        batch = inputs[0].shape[0]
        boxes = _as_tensor([ds.view_boxes for ds in data_samples], device, torch.float32)  # (B, V, 4)
        flips = _as_tensor([ds.view_flips for ds in data_samples], device, torch.bool)  # (B, V)
        cmask = _as_tensor([ds.content_masks for ds in data_samples], device, torch.bool)  # (B, G, h, w)
        pmask = _as_tensor([ds.pos_masks for ds in data_samples], device, torch.bool)
        n_global = cmask.shape[1]
        if boxes.shape[1] != len(inputs):
            raise ValueError(f'{len(inputs)} view batches but view_boxes has {boxes.shape[1]} views per image')
        groups = self._group_by_size(inputs)
        if groups[0] != list(range(n_global)):
            raise ValueError(f'the first {n_global} views (the masked ones) must be the global views of one size')
        sched = self.schedule()
        temp = sched['teacher_temp']

        def view_major(t: torch.Tensor, idx: List[int]) -> torch.Tensor:  # (B, V, ...) -> (len(idx) * B, ...)
            return t[:, idx].transpose(0, 1).flatten(0, 1)

        g_idx = groups[0]
        g_img = torch.cat([inputs[i] for i in g_idx])
        g_boxes, g_flips = view_major(boxes, g_idx), view_major(flips, g_idx)
        g_cmask, g_pmask = view_major(cmask, g_idx), view_major(pmask, g_idx)
        c_sel, p_sel = g_cmask.flatten(1), g_pmask.flatten(1)  # (G * B, N)

        teacher = self.teacher.module
        t_patch_neck = teacher['patch_neck'] if self.patch_neck is not None else teacher['neck']
        s_patch_neck = self.patch_neck if self.patch_neck is not None else self.neck
        with torch.no_grad():
            t_cls, t_patch = teacher['backbone'].forward_tokens(g_img, g_boxes, g_flips)
            t_cls_logits = teacher['neck'](t_cls)
            t_content = t_patch_neck(t_patch[c_sel])
            t_pos = t_patch_neck(t_patch[p_sel])

        s_cls, s_patch = self.backbone.forward_tokens(g_img, g_boxes, g_flips, content_mask=g_cmask,
                                                      pos_mask=g_pmask)
        s_cls_all = [s_cls]
        for idx in groups[1:]:  # local views: unmasked, one pass per resolution
            l_cls, _ = self.backbone.forward_tokens(torch.cat([inputs[i] for i in idx]),
                                                    view_major(boxes, idx), view_major(flips, idx))
            s_cls_all.append(l_cls)
        s_cls_logits = self.neck(torch.cat(s_cls_all))
        s_content = s_patch_neck(s_patch[c_sel])
        s_pos = s_patch_neck(s_patch[p_sel])

        def token_weights(sel: torch.Tensor) -> torch.Tensor:  # 1 / masked tokens of the token's view
            per_view = sel.sum(1, keepdim=True).clamp_min(1).float()
            return (sel.float() / per_view)[sel]

        losses = self.cls_head.loss(list(s_cls_logits.split(batch)), list(t_cls_logits.split(batch)), temp)
        losses.update(self.head.loss(s_content, t_content, s_pos, t_pos, temp,
                                     content_weights=token_weights(c_sel), pos_weights=token_weights(p_sel)))
        koleo = sum(self.koleo(c) for c in s_cls.split(batch))
        losses['loss_koleo'] = self.koleo_weight * koleo

        with torch.no_grad():  # diagnostics: keys without 'loss' are logged, not summed
            probs = self.cls_head.loss_module.centering.targets(t_cls_logits, temp)
            losses['teacher_entropy'] = -(probs * probs.clamp_min(1e-12).log()).sum(-1).mean()
            losses['center_norm'] = self.cls_head.loss_module.center.norm()
            losses['pos_acc'] = masked_position_accuracy(s_pos.detach(), t_pos)
            losses['teacher_temp'] = torch.tensor(temp, device=device)
            losses['momentum'] = torch.tensor(sched['momentum'], device=device)
            losses['masked_content'] = c_sel.float().mean()
            losses['masked_pos'] = p_sel.float().mean()
        return losses
