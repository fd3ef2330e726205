"""projects/benchmarks/train_step.py: the real train_step on synthetic data, counted FLOPs, MFU, the profile."""
import os.path as osp

import pytest
import torch

from projects.benchmarks import train_step
from tests.helpers import ROOT

TINY = osp.join(ROOT, 'configs/posfield/posfield_vit-tiny-p8_1xb4-6iter_cpu-smoke.py')
DAGGER = osp.join(ROOT, 'configs/posfield/dinov2-dagger_vit-small-p16_4xb64-amp-100e_in1k.py')


def test_flop_count_of_a_linear_layer_forward_and_backward():
    """Independent count: forward x @ W^T, backward dL/dx and dL/dW, each 2 * B * in * out."""
    lin = torch.nn.Linear(16, 8)
    x = torch.randn(5, 16, requires_grad=True)
    assert train_step.count_flops(lambda: lin(x).sum().backward()) == 3 * 2 * 5 * 16 * 8


def test_matmul_peak_is_positive():
    peak = train_step.matmul_peak_flops('cpu', size=128, seconds=0.05)
    assert peak['flops_per_s'] > 0 and peak['dtype'] == 'float32'


def test_imagenet_layout_config_gets_synthetic_folder_dataset():
    from projects.common.runner_setup import load_config
    cfg = train_step.prepare_config(load_config(DAGGER), arch='ViT-S', amp='none', batch_size=8)
    assert cfg.train_dataloader.dataset.type == 'ImageNet'
    ds = train_step.synthetic_dataset_cfg(cfg, '/tmp/x')
    assert ds['type'] == 'CustomDataset' and ds['data_root'] == '/tmp/x'
    assert ds['pipeline'] == cfg.train_dataloader.dataset.pipeline
    assert cfg.model.backbone.arch['embed_dims'] == 384 and cfg.model.neck.in_channels == 384
    assert cfg.optim_wrapper.type == 'OptimWrapper' and 'loss_scale' not in cfg.optim_wrapper
    assert cfg.train_dataloader.batch_size == 8
    wrapped = dict(type='RepeatDataset', times=2, dataset=dict(type='X', pipeline=['p']))
    assert train_step.train_pipeline_of(wrapped) == ['p']
    with pytest.raises(KeyError, match='train_dataloader.dataset.dataset has no pipeline'):
        train_step.train_pipeline_of(dict(type='RepeatDataset', dataset=dict(type='X')))


def test_tiny_config_runs_real_train_step_with_flops_and_mfu():
    r = train_step.measure(TINY, batch_size=2, warmup=1, steps=1, threads=1)
    assert r['images_per_s'] > 0 and len(r['losses']) == 2 and all(map(lambda v: v == v, r['losses']))
    assert r['flops_per_step'] > 0 and r['flops_per_image'] == r['flops_per_step'] / 2
    assert 0 < r['mfu'] <= 1
    assert set(r['phases_s']) == set(train_step.PHASES) and r['phases_s']['backward'] > 0
    assert r['peak_rss_gib'] > 0 and r['max_foreign_cpu_frac'] >= 0 and r['minor_faults_per_step'] >= 0
    assert 'photometric_s_per_batch' not in r  # a CPU config: the photometric augmentation is in the workers


def test_profile_writes_the_op_table_and_the_matmul_rates_by_shape(tmp_path):
    # large enough that its rate prints above 0.0 GFLOP/s (one decimal) even when a loaded machine preempts it
    a = torch.randn(512, 256)
    path = train_step.profile_step(lambda: a @ a.t(), str(tmp_path / 'ops.txt'), cuda=False)
    text = open(path).read()
    assert 'aten::mm' in text
    shape_rows = [line for line in text.split('By op and input shapes')[1].splitlines() if 'aten::mm ' in line]
    assert shape_rows and '[[512, 256], [256, 512]]' in shape_rows[0]
    assert float(shape_rows[0].split()[3]) > 0  # the GFLOP/s column of a matmul row


def test_profiled_flops_from_recorded_shapes():
    assert train_step.profiled_flops('aten::mm', [[4, 5], [5, 6]]) == 2 * 4 * 5 * 6
    assert train_step.profiled_flops('aten::addmm', [[6], [4, 5], [5, 6], [], []]) == 2 * 4 * 5 * 6
    assert train_step.profiled_flops('aten::bmm', [[3, 4, 5], [3, 5, 6]]) == 2 * 3 * 4 * 5 * 6
    assert train_step.profiled_flops('mkldnn::_linear_pointwise', [[2, 4, 5], [6, 5], [6], [], [], []]) == 2 * 8 * 5 * 6
    assert train_step.profiled_flops('aten::add', [[4], [4]]) is None
    assert train_step.profiled_flops('aten::mm', [[], []]) is None
    assert train_step.profiled_flops('autograd::engine::evaluate_function: MmBackward0', []) is None
    assert train_step.profiled_flops('_OneDNNLinear', [[2, 5]]) is None


def _pretraining_configs():
    """Every shipped PosFieldSSL pre-training config (the method, DINOv2-dagger, ablations, demo, smoke)."""
    from mmengine.config import Config

    from tests.helpers import SHIPPED_CONFIGS
    return [osp.relpath(p, ROOT) for p in SHIPPED_CONFIGS if Config.fromfile(p).model.get('type') == 'PosFieldSSL']


PRETRAINING_CONFIGS = _pretraining_configs()


def test_every_pretraining_config_is_found():
    assert len(PRETRAINING_CONFIGS) >= 16
    assert osp.relpath(DAGGER, ROOT) in PRETRAINING_CONFIGS and osp.relpath(TINY, ROOT) in PRETRAINING_CONFIGS


@pytest.mark.parametrize('config', PRETRAINING_CONFIGS)
def test_every_pretraining_config_runs_its_real_train_step_on_synthetic_data(config):
    """The benchmark swaps any config's dataset (ImageNet layout, unlabelled folder, ...) for synthetic images
    through the config's own pipeline and runs the real train_step; ViT-micro keeps the test cheap, the views,
    masks, heads and losses are the config's."""
    r = train_step.measure(osp.join(ROOT, config), arch='ViT-micro', batch_size=2, warmup=0, steps=1, threads=1,
                      flops=False)
    assert r['images_per_s'] > 0 and r['losses'] and all(v == v for v in r['losses'])
    from mmengine.config import Config
    on_device = Config.fromfile(osp.join(ROOT, config)).model.data_preprocessor.get('photometric') is not None
    assert ('photometric_s_per_batch' in r) == on_device  # applied to the pre-built batches, timed apart
