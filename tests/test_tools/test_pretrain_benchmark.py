"""tools/benchmarks/pretrain_benchmark.py: the real train_step on synthetic data, counted FLOPs, MFU, ratios."""
import json
import os.path as osp

import pytest
import torch

from tests.helpers import load_tool

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
bench = load_tool('tools/benchmarks/pretrain_benchmark.py')
TINY = osp.join(ROOT, 'configs/posfield/posfield_vit-tiny-p8_1xb4-6iter_cpu-smoke.py')
DAGGER = osp.join(ROOT, 'configs/posfield/dinov2-dagger_vit-small-p16_4xb64-amp-100e_in1k.py')


def test_flop_count_of_a_linear_layer_forward_and_backward():
    """Independent count: forward x @ W^T, backward dL/dx and dL/dW, each 2 * B * in * out."""
    lin = torch.nn.Linear(16, 8)
    x = torch.randn(5, 16, requires_grad=True)
    assert bench.count_flops(lambda: lin(x).sum().backward()) == 3 * 2 * 5 * 16 * 8


def test_matmul_peak_is_positive():
    peak = bench.matmul_peak_flops('cpu', size=128, seconds=0.05)
    assert peak['flops_per_s'] > 0 and peak['dtype'] == 'float32'


def test_imagenet_layout_config_gets_synthetic_folder_dataset():
    from projects.common.runner_setup import load_config
    cfg = bench.prepare_config(load_config(DAGGER), arch='ViT-S', amp='none', batch_size=8)
    assert cfg.train_dataloader.dataset.type == 'ImageNet'
    ds = bench.synthetic_dataset_cfg(cfg, '/tmp/x')
    assert ds['type'] == 'CustomDataset' and ds['data_root'] == '/tmp/x'
    assert ds['pipeline'] == cfg.train_dataloader.dataset.pipeline
    assert cfg.model.backbone.arch['embed_dims'] == 384 and cfg.model.neck.in_channels == 384
    assert cfg.optim_wrapper.type == 'OptimWrapper' and 'loss_scale' not in cfg.optim_wrapper
    assert cfg.train_dataloader.batch_size == 8
    wrapped = dict(type='RepeatDataset', times=2, dataset=dict(type='X', pipeline=['p']))
    assert bench.train_pipeline_of(wrapped) == ['p']
    with pytest.raises(KeyError, match='train_dataloader.dataset.dataset has no pipeline'):
        bench.train_pipeline_of(dict(type='RepeatDataset', dataset=dict(type='X')))


def test_tiny_config_runs_real_train_step_with_flops_and_mfu():
    r = bench.measure(TINY, batch_size=2, warmup=1, steps=1, threads=1)
    assert r['images_per_s'] > 0 and len(r['losses']) == 2 and all(map(lambda v: v == v, r['losses']))
    assert r['flops_per_step'] > 0 and r['flops_per_image'] == r['flops_per_step'] / 2
    assert 0 < r['mfu'] <= 1
    assert set(r['phases_s']) == set(bench.PHASES) and r['phases_s']['backward'] > 0
    assert r['peak_rss_gib'] > 0 and r['max_foreign_cpu_frac'] >= 0 and r['minor_faults_per_step'] >= 0
    assert 'photometric_s_per_batch' not in r  # a CPU config: the photometric augmentation is in the workers


def test_paired_ratios_are_within_round():
    runs = {'a': [dict(kind='ours', images_per_s=2.0, peak_rss_gib=1.0),
                  dict(kind='ours', images_per_s=1.0, peak_rss_gib=1.0)],
            'ref': [dict(kind='reference', images_per_s=1.0, peak_rss_gib=2.0),
                    dict(kind='reference', images_per_s=0.5, peak_rss_gib=2.0)]}
    (row,) = bench.ratio_table(runs)
    assert (row['run'], row['against'], row['rounds']) == ('a', 'ref', 2)
    assert row['img_per_s_ratio'] == 2.0 and row['peak_rss_ratio'] == 0.5


def test_reference_directory_must_hold_the_driver(tmp_path):
    args = bench.parse_args([TINY, '--reference', str(tmp_path), '--device', 'cpu'])
    with pytest.raises(SystemExit, match='run_step.py not found'):
        bench.entries(args)


def test_profile_writes_the_op_table_and_the_matmul_rates_by_shape(tmp_path):
    a = torch.randn(64, 32)
    path = bench.profile_step(lambda: a @ a.t(), str(tmp_path / 'ops.txt'), cuda=False)
    text = open(path).read()
    assert 'aten::mm' in text
    shape_rows = [line for line in text.split('By op and input shapes')[1].splitlines() if 'aten::mm ' in line]
    assert shape_rows and '[[64, 32], [32, 64]]' in shape_rows[0]
    assert float(shape_rows[0].split()[3]) > 0  # the GFLOP/s column of a matmul row


def test_profiled_flops_from_recorded_shapes():
    assert bench.profiled_flops('aten::mm', [[4, 5], [5, 6]]) == 2 * 4 * 5 * 6
    assert bench.profiled_flops('aten::addmm', [[6], [4, 5], [5, 6], [], []]) == 2 * 4 * 5 * 6
    assert bench.profiled_flops('aten::bmm', [[3, 4, 5], [3, 5, 6]]) == 2 * 3 * 4 * 5 * 6
    assert bench.profiled_flops('mkldnn::_linear_pointwise', [[2, 4, 5], [6, 5], [6], [], [], []]) == 2 * 8 * 5 * 6
    assert bench.profiled_flops('aten::add', [[4], [4]]) is None
    assert bench.profiled_flops('aten::mm', [[], []]) is None
    assert bench.profiled_flops('autograd::engine::evaluate_function: MmBackward0', []) is None
    assert bench.profiled_flops('_OneDNNLinear', [[2, 5]]) is None


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
    r = bench.measure(osp.join(ROOT, config), arch='ViT-micro', batch_size=2, warmup=0, steps=1, threads=1,
                      flops=False)
    assert r['images_per_s'] > 0 and r['losses'] and all(v == v for v in r['losses'])
    from mmengine.config import Config
    on_device = Config.fromfile(osp.join(ROOT, config)).model.data_preprocessor.get('photometric') is not None
    assert ('photometric_s_per_batch' in r) == on_device  # applied to the pre-built batches, timed apart


FAKE_DINOV2 = """
class DataAugmentationDINO:
    def __init__(self, global_crops_scale, local_crops_scale, local_crops_number, global_crops_size=224,
                 local_crops_size=96):
        assert global_crops_size == 64 and local_crops_size == 32 and len(global_crops_scale) == 2
        self.n = local_crops_number

    def __call__(self, image):
        crop = image.resize((8, 8))
        return dict(global_crops=[crop, crop], local_crops=[crop] * self.n)
"""


def test_pipeline_mode_times_the_loader_of_both_paths_and_the_reference(tmp_path):
    """A small --pipeline run: fields of the JSON, not timings (a stand-in DataAugmentationDINO)."""
    package = tmp_path / 'ref' / 'src' / 'dinov2' / 'data'
    package.mkdir(parents=True)
    (package.parent / '__init__.py').write_text('')
    (package / '__init__.py').write_text('')
    (package / 'augmentations.py').write_text(FAKE_DINOV2)
    images = bench.make_images(str(tmp_path / 'images'), n=3, size=(80, 60))
    out = tmp_path / 'loader.json'
    record = bench.main([TINY, '--pipeline', '--images', images, '--num-images', '3', '--warmup', '1', '--rounds', '1',
                         '--reference', str(tmp_path / 'ref'), '--out', str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(record))
    assert record['mode'] == 'pipeline' and record['machine']['cpus'] >= 1 and record['date']
    assert set(record['runs']) == {'ours', 'ours-worker-photometric', 'dinov2'}
    for kind, (run, ) in record['runs'].items():
        assert run['kind'] == kind and run['images'] == 3 and run['distinct_images'] == 3 and run['threads'] == 1
        assert run['views_per_image'] == 4  # the smoke config: 2 global + 2 local views
        assert run['cpu_s_per_image'] > 0 and run['images_per_cpu_s'] == pytest.approx(1 / run['cpu_s_per_image'])
    pairs = {(r['run'], r['against']): r for r in record['ratios']}
    assert set(pairs) == {('ours', 'ours-worker-photometric'), ('ours', 'dinov2'),
                          ('ours-worker-photometric', 'dinov2')}
    row = pairs['ours', 'dinov2']
    assert row['rounds'] == 1 and row['cpu_per_image_ratio'] == pytest.approx(
        record['runs']['ours'][0]['cpu_s_per_image'] / record['runs']['dinov2'][0]['cpu_s_per_image'])


def test_pipeline_mode_arguments():
    with pytest.raises(SystemExit):
        bench.parse_args([TINY, DAGGER, '--pipeline'])
    with pytest.raises(SystemExit, match='no DINOv2 source tree'):
        bench.main([TINY, '--pipeline', '--num-images', '1', '--reference', '/nonexistent'])
