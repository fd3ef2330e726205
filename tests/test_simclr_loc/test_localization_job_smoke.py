"""tools/run_localization_job.py --preset smoke end to end on data the test makes (no download), then resumed."""
import base64
import json
import os
import re
import shutil
import statistics
import subprocess
import sys

import pytest

from tests.helpers import ROOT, write_images
from tests.test_simclr_loc.voc_fixture import write_voc

METRICS = ('top1', 'top3', 'mean_iou', 'acc_iou50', 'acc_iou70')


def run_job(args):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, os.path.join(ROOT, 'tools/run_localization_job.py'), *args], env=env,
                          capture_output=True, text=True, timeout=2400, cwd=ROOT)


@pytest.fixture(scope='module')
def smoke_job(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('locjob')
    pool = write_images(tmp / 'pool', n=8)
    n = 12
    write_voc(tmp / 'voc', n=n, splits=dict(trainval=range(0, 9), test=range(9, n)))
    wd = tmp / 'job'
    args = ['--preset', 'smoke', '--work-dir', str(wd), '--unlabeled', pool, '--voc', str(tmp / 'voc'),
            '--workers', '0']
    out = run_job(args + ['--seeds', '0,1', '--fractions', '0.5'])  # 3 rows x 1 fraction x 2 seeds
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    return wd, args, out.stdout


def test_summary_has_every_row_fraction_and_seed(smoke_job):
    wd, _, stdout = smoke_job
    summary = json.loads((wd / 'summary.json').read_text())
    assert summary['inits'] == ['simclr', 'random', 'imagenet']
    keys = sorted((r['init'], r['fraction'], r['seed']) for r in summary['runs'])
    assert keys == sorted((i, 0.5, s) for i in ('simclr', 'random', 'imagenet') for s in (0, 1))
    for r in summary['runs']:
        for k in METRICS:
            assert 0.0 <= r['metrics'][k] <= 100.0
        assert r['metrics']['top1'] <= r['metrics']['top3']
        assert r['metrics']['acc_iou70'] <= r['metrics']['acc_iou50']
        assert r['metrics']['num_objects'] == 3  # the whole test split is scored at every fraction
        # the table holds what tools/test.py wrote
        written = json.loads((wd / r['work_dir'] / 'metrics.json').read_text())['metrics']
        assert written['loc/mean_iou'] == pytest.approx(r['metrics']['mean_iou'])
    assert len(summary['table']) == 3
    for row in summary['table']:
        mine = [r['metrics'] for r in summary['runs'] if r['init'] == row['init'] and r['fraction'] == row['fraction']]
        for k in METRICS:
            assert row[k] == pytest.approx(statistics.mean(m[k] for m in mine))
            assert row[k + '_std'] == pytest.approx(statistics.stdev(m[k] for m in mine))
    # 50 % of the 9 trainval images: class-stratified, rounded up per class (3 classes x 2)
    assert {r['num_train'] for r in summary['table']} == {6}
    # each initialisation really reached its backbone
    assert 'loaded' in (wd / 'finetune/simclr_50pct_seed0/stage.log').read_text()
    assert 'ImageNet tensors' in (wd / 'finetune/imagenet_50pct_seed0/stage.log').read_text()
    assert 'randomly initialised' in (wd / 'finetune/random_50pct_seed0/stage.log').read_text()
    assert re.search(r'\[stage 1/10\] data', stdout) and 'ETA' in stdout and '[stage 10/10] report' in stdout


def test_report_embeds_its_images(smoke_job):
    wd, _, _ = smoke_job
    summary = json.loads((wd / 'summary.json').read_text())
    page = (wd / 'report.html').read_text()
    images = re.findall(r"src=[\"']data:image/png;base64,([A-Za-z0-9+/=]+)[\"']", page)
    assert len(images) == 2  # the metric plot and the Grad-CAM panel
    for data in images:
        assert base64.b64decode(data)[:8] == b'\x89PNG\r\n\x1a\n'
    assert not re.search(r"src=[\"'](?!data:)", page)  # nothing is linked from outside the file
    assert base64.b64decode(images[1]) == (wd / summary['gradcam']['panel']).read_bytes()
    for img in summary['gradcam']['images']:
        assert (wd / img).is_file()
    assert summary['gradcam']['names'] == ['simclr', 'random', 'imagenet']


def test_rerun_skips_finished_stages_and_adds_a_fraction(smoke_job, tmp_path):
    first, args, _ = smoke_job
    wd = tmp_path / 'job'  # a copy: the other tests keep reading the first run
    shutil.copytree(first, wd)
    args = [str(wd) if a == str(first) else a for a in args]
    before = (wd / 'finetune/random_50pct_seed0/metrics.json').stat().st_mtime_ns
    out = run_job(args + ['--seeds', '0', '--fractions', '0.5,1.0'])
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    # data, SimCLR, the three 50 % seed-0 runs and Grad-CAM (on the 50 % models) are complete: only 100 % trains
    assert out.stdout.count('skipped (output complete)') == 6
    assert out.stdout.count('tools/train.py') == 3 and 'finetune/simclr_100pct_seed0' in out.stdout
    assert (wd / 'finetune/random_50pct_seed0/metrics.json').stat().st_mtime_ns == before
    summary = json.loads((wd / 'summary.json').read_text())
    assert sorted((r['init'], r['fraction']) for r in summary['runs']) == sorted(
        (i, f) for i in ('simclr', 'random', 'imagenet') for f in (0.5, 1.0))
    assert {r['num_train'] for r in summary['table'] if r['fraction'] == 1.0} == {9}
    for row in summary['table']:
        for k in METRICS:  # one seed: the mean is that run's value, the spread zero
            assert row[k + '_std'] == 0.0 and 0.0 <= row[k] <= 100.0


def test_a_unit_counts_as_done_only_with_complete_metrics_and_the_table_is_mean_and_sample_std(tmp_path):
    from projects.jobs import localization_job as job
    path = tmp_path / 'metrics.json'
    assert job.read_metrics(str(path)) is None  # absent
    values = dict(top1=50.0, top3=100.0, mean_iou=62.5, acc_iou50=75.0, acc_iou70=25.0, num_objects=4)
    path.write_text(json.dumps(dict(metrics={f'loc/{k}': v for k, v in values.items()})))
    assert job.read_metrics(str(path)) == values
    path.write_text(path.read_text()[:40])  # cut short
    assert job.read_metrics(str(path)) is None
    path.write_text(json.dumps(dict(metrics={'loc/top1': 50.0})))  # another tool's or an older run's file
    assert job.read_metrics(str(path)) is None
    runs = [dict(init='random', fraction=0.1, seed=s, num_train=7, metrics=dict(values, acc_iou50=v))
            for s, v in enumerate((40.0, 50.0, 90.0))]
    (row,) = job.aggregate(runs, ['random'], [0.1])
    assert row['acc_iou50'] == pytest.approx(60.0) and row['acc_iou50_std'] == pytest.approx(26.457513)  # sqrt(700)
    assert row['top1'] == 50.0 and row['top1_std'] == 0.0 and row['seeds'] == [0, 1, 2] and row['num_train'] == 7
