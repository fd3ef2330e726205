"""tools/benchmarks/pretrain_benchmark.py: its arguments, the reference directory, the --pipeline mode."""
import json
import os.path as osp

import pytest

from projects.benchmarks.train_step import make_images
from tests.helpers import ROOT, load_tool

bench = load_tool('tools/benchmarks/pretrain_benchmark.py')
TINY = osp.join(ROOT, 'configs/posfield/posfield_vit-tiny-p8_1xb4-6iter_cpu-smoke.py')
DAGGER = osp.join(ROOT, 'configs/posfield/dinov2-dagger_vit-small-p16_4xb64-amp-100e_in1k.py')


def test_reference_directory_must_hold_the_driver(tmp_path):
    with pytest.raises(SystemExit, match='run_step.py not found'):
        bench.main([TINY, '--reference', str(tmp_path), '--device', 'cpu'])


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
    images = make_images(str(tmp_path / 'images'), n=3, size=(80, 60))
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

