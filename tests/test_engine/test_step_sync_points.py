"""Host-device synchronisation points of one pre-training ``train_step``, counted on the CPU.

Every pre-training config under configs/ (the method, DINOv2-dagger, each ablation, the demo and smoke configs) is
built at a tiny size (its own placement, masking, drop-path and loss settings kept) and one step runs under a
``TorchDispatchMode`` that counts the operations that read a device value back to the host (``.item()``,
``int(tensor)``, ``bool(tensor)``, ``nonzero``, boolean-mask indexing, ``masked_select``, ...) and the direct reads
``tolist`` / ``numpy``. The optimiser's own step (gradient clipping's norm, AMP's overflow check, in mmengine) is
not counted. The step may read back at most 2 times (docs/design.md, contract 2): the batch's masks come with
precomputed indices and counts, and the logged values are read in one transfer.
"""
import contextlib
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmengine.registry import FUNCTIONS, init_default_scope
from mmengine.structures import BaseDataElement
from mmpretrain.registry import MODELS
from torch.utils._python_dispatch import TorchDispatchMode

import projects.posfield  # noqa: F401
from tests.helpers import ROOT, SHIPPED_CONFIGS

MAX_SYNC_POINTS = 2
_ATEN = torch.ops.aten
# results read on the host, or an output whose size depends on tensor values
_ALWAYS = {_ATEN._local_scalar_dense.default, _ATEN.is_nonzero.default, _ATEN.item.default,
           _ATEN.nonzero.default, _ATEN.nonzero.out, _ATEN.masked_select.default, _ATEN.equal.default,
           _ATEN.bincount.default, _ATEN.repeat_interleave.Tensor, _ATEN._unique2.default,
           _ATEN.unique_consecutive.default, _ATEN.unique_dim.default, _ATEN.allclose.default}
_INDEXING = {_ATEN.index.Tensor, _ATEN.index_put.default, _ATEN.index_put_.default, _ATEN._index_put_impl_.default}


def _bool_index(args) -> bool:
    indices = args[1] if len(args) > 1 else ()
    return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in indices or ())


class SyncCounter(TorchDispatchMode):
    """Counts host synchronisation points; ``paused()`` leaves a region out."""

    def __init__(self):
        super().__init__()
        self.events = []
        self.active = True

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.active and (func in _ALWAYS or (func in _INDEXING and _bool_index(args))):
            self.events.append(str(func))
        return func(*args, **(kwargs or {}))

    @contextlib.contextmanager
    def paused(self):
        self.active, before = False, self.active
        try:
            yield
        finally:
            self.active = before

    @contextlib.contextmanager
    def counting(self):
        """The mode, plus the host reads that do not dispatch an operator (``tolist``, ``numpy``)."""
        originals = {name: getattr(torch.Tensor, name) for name in ('tolist', 'numpy')}

        def wrap(name):
            def read(tensor, *args, **kwargs):
                if self.active:
                    self.events.append(f'Tensor.{name}')
                return originals[name](tensor, *args, **kwargs)
            return read
        try:
            for name in originals:
                setattr(torch.Tensor, name, wrap(name))
            with self:
                yield self
        finally:
            for name, fn in originals.items():
                setattr(torch.Tensor, name, fn)


def test_the_counter_counts_each_kind_of_sync_point():
    x = torch.randn(6, 3)
    mask = x[:, 0] > 0
    counter = SyncCounter()
    with counter.counting():
        float(x.sum())  # 1
        x[mask]  # 2
        x.nonzero()  # 3
        x[:, 0].tolist()  # 4
        if x.sum() > 0:  # 5 (bool)
            pass
        y = x.clone()
        y[mask] = 0  # 6
        x.index_select(0, torch.tensor([0, 2]))  # not a sync point
        with counter.paused():
            x.sum().item()  # not counted
    assert len(counter.events) == 6, counter.events


def _pretrain_configs():
    found = []
    for path in SHIPPED_CONFIGS:
        rel = osp.relpath(path, ROOT)
        if not rel.startswith(('configs/posfield/', 'configs/demo/')) or 'mask-rcnn' in rel:
            continue
        found.append(rel)
    return found


def _tiny(rel: str):
    """The config's model and collate options at a tiny size: ViT-micro / patch 8 / 64 px, 256 prototypes."""
    cfg = Config.fromfile(osp.join(ROOT, rel))
    assert cfg.model.type == 'PosFieldSSL', rel
    backbone = cfg.model.backbone
    backbone.update(arch='ViT-micro', patch_size=8, img_size=64)
    if backbone.get('pos_field'):
        backbone.pos_field.field_size = 8
    cfg.model.neck.update(hidden_channels=128, bottleneck_channels=32, num_prototypes=256)
    cfg.model.cls_head.loss.out_dim = 256
    cfg.model.head.loss.out_dim = 256
    collate = dict(cfg.train_dataloader.collate_fn)
    assert collate.pop('type') == 'multiview_collate', rel
    collate['patch_size'] = 8
    return cfg, collate


def _samples(batch=4, n_local=2, seed=0):
    """Per-image outputs of PosFieldMultiCrop + PackInputs (64 px global, 32 px local views)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(batch):
        views = [torch.from_numpy((rng.random((3, 64, 64)) * 255).astype(np.uint8)) for _ in range(2)]
        views += [torch.from_numpy((rng.random((3, 32, 32)) * 255).astype(np.uint8)) for _ in range(n_local)]
        sample = BaseDataElement()
        x0, y0 = rng.uniform(0, 0.4, 2)
        sample.set_field(np.array([[x0, y0, x0 + 0.5, y0 + 0.5]] * (2 + n_local), np.float32), 'crop_boxes')
        sample.set_field(rng.random(2 + n_local) < 0.5, 'view_flips')
        sample.set_field(np.array([80, 120]), 'source_hw')
        out.append(dict(inputs=views, data_samples=sample))
    return out


def _count_step_syncs(cfg, collate_options, monkeypatch) -> list:
    """The sync points of one train_step (after a first one) of ``cfg.model`` on a tiny batch."""
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.set_train_length(max_iters=100, iters_per_epoch=10)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optim = OptimWrapper(torch.optim.AdamW(params, lr=1e-4), clip_grad=dict(max_norm=3.0))
    collate = FUNCTIONS.get('multiview_collate')
    # masks on every global view, so every masking branch of the config runs
    collate_options.setdefault('masking', {})['mask_prob'] = 1.0
    model.train_step(collate(_samples(seed=0), seed=0, **collate_options), optim)  # reads the step buffer once
    data = collate(_samples(seed=1), seed=1, **collate_options)  # built in a dataloader worker in training
    counter = SyncCounter()
    step = type(model).optimizer_step

    def optimizer_step_not_counted(optim_wrapper):
        with counter.paused():
            step(optim_wrapper)
    monkeypatch.setattr(model, 'optimizer_step', optimizer_step_not_counted)
    with counter.counting():
        log_vars = model.train_step(data, optim)
    assert data['inputs'].n_content + data['inputs'].n_pos > 0
    assert all(isinstance(v, float) for v in log_vars.values())
    return counter.events


@pytest.mark.parametrize('rel', _pretrain_configs())
def test_one_train_step_synchronises_at_most_twice(rel, monkeypatch):
    cfg, collate_options = _tiny(rel)
    events = _count_step_syncs(cfg, collate_options, monkeypatch)
    assert len(events) <= MAX_SYNC_POINTS, (rel, events)


@pytest.mark.parametrize('mode', ['bernoulli', 'dinov2'])
def test_either_stochastic_depth_rule_adds_no_sync_point(mode, monkeypatch):
    """mmcv's random kept count ('bernoulli') and DINOv2's fixed one, at a high rate so that samples drop."""
    cfg, collate_options = _tiny('configs/posfield/posfield_vit-small-p16_4xb64-amp-100e_in1k.py')
    cfg.model.backbone.update(drop_path_rate=0.5, drop_path_mode=mode)
    events = _count_step_syncs(cfg, collate_options, monkeypatch)
    assert len(events) <= MAX_SYNC_POINTS, (mode, events)
