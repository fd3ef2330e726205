"""The default job's smoke preset runs end to end on data the test makes (no download): every stage per seed, the
table names the data, a second run resumes (runs nothing again), and report.html renders in headless Chromium
with every image loaded."""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.helpers import ROOT, write_coco, write_images

JOB = os.path.join(ROOT, 'tools/run_default_job.py')
# The smoke job (pre-training, two probes, two detectors, report) is about 5 min on 2 free cores; the fixture runs
# inside whichever test comes first, so every test here may wait for it (pytest.ini's 900 s is per test).
pytestmark = pytest.mark.timeout(2400)


def _job(args, cwd=ROOT):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, JOB, '--preset', 'smoke', '--workers', '0'] + args, env=env,
                          capture_output=True, text=True, timeout=1500, cwd=cwd)


@pytest.fixture(scope='module')
def smoke_job(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('job')
    unlabeled = write_images(tmp / 'my_photos', n=12)
    coco = write_coco(tmp / 'my_coco', n_train=4, n_val=2)
    wd = tmp / 'job'
    out = _job(['--work-dir', str(wd), '--unlabeled', unlabeled, '--coco', coco, '--seed', '3'])
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    return dict(wd=wd, out=out, unlabeled=unlabeled, coco=coco)


def test_default_job_smoke(smoke_job):
    wd, out = smoke_job['wd'], smoke_job['out']
    summary = json.loads((wd / 'summary.json').read_text())
    assert [r['init'] for r in summary['results']] == ['posfield (ours)', 'random init', 'raw pixels',
                                                       'all background']
    by = {r['init']: r for r in summary['results']}
    for init in ('posfield (ours)', 'random init'):
        for key in ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75', 'segm_mAP', 'segm_mAP_50', 'segm_mAP_75'):
            assert isinstance(by[init][key], float) and -1.0 <= by[init][key] <= 1.0
    for init in by:
        assert 0.0 <= by[init]['patch_miou'] <= 100.0 and by[init]['seed'] == 3
    sd = wd / 'seed_3'
    for stage in ('det_posfield', 'det_random'):
        metrics = json.loads((sd / stage / 'metrics.json').read_text())['metrics']
        assert 'coco/bbox_mAP' in metrics and 'coco/segm_mAP' in metrics
    assert (sd / 'pretrain_posfield' / 'backbone.pth').exists()
    assert 'loaded' in (sd / 'det_posfield' / 'stage.log').read_text()  # the teacher went into the detector
    probe = json.loads((sd / 'probe_posfield' / 'probe.json').read_text())
    assert probe['rows'][0]['with_cls'] is False and probe['seed'] == 3  # the extracted backbone, as detected
    random_probe = json.loads((sd / 'probe_random' / 'probe.json').read_text())
    assert [r['name'] for r in random_probe['rows']] == ['random', 'all background', 'raw pixels']
    # one learning rate per linear measure for the backbone rows, which report their val score there; the
    # raw-pixel floor keeps its own choice
    shared = summary['probe']['shared_lr']
    assert set(shared) == {'patch', 'foreground', 'box'} or set(shared) == {'patch', 'foreground'}
    for init, probe_row in (('posfield (ours)', probe['rows'][0]), ('random init', random_probe['rows'][0])):
        at = {e['lr']: e['val_miou'] for e in probe_row['patch']['per_lr']}
        assert by[init]['patch_miou'] == at[shared['patch']]
    assert by['raw pixels']['patch_miou'] == random_probe['rows'][2]['patch']['miou']
    assert f"patch {shared['patch']:g}" in out.stdout
    assert random_probe['rows'][0]['with_cls'] is False  # random init seen as the detector sees it, too
    assert summary['seeds'] == [3]
    for stage in ('pretrain_posfield', 'det_posfield', 'det_random'):  # every training stage ran with that seed
        assert 'seed: 3' in (sd / stage / 'stage.log').read_text()
    # progress: a line per stage with elapsed time and ETA, and live iteration counts from mmengine's log
    assert re.search(r'\[stage 1/\d+\] pretrain posfield \(seed 3\): started\s+\(elapsed \d+:\d\d:\d\d, ETA ',
                     out.stdout)
    assert re.search(r'pretrain posfield \(seed 3\): iter \d+/4 ', out.stdout)
    # the table names the data it was computed on: the user's folders and the class count
    assert 'my_coco/ val split (3 classes: ellipse, rectangle, triangle)' in out.stdout
    assert 'pre-trained on my_photos/' in out.stdout and 'synthetic' not in out.stdout.split('Default job (')[-1]
    assert summary['data']['classes'] == ['ellipse', 'rectangle', 'triangle']


def test_default_job_resumes_without_rerunning_stages(smoke_job):
    wd = smoke_job['wd']
    before = json.loads((wd / 'summary.json').read_text())
    ckpt = wd / 'seed_3' / 'pretrain_posfield' / 'iter_4.pth'
    mtime = ckpt.stat().st_mtime
    out = _job(['--work-dir', str(wd), '--unlabeled', smoke_job['unlabeled'], '--coco', smoke_job['coco'],
                '--seed', '3', '--no-report'])
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    n_stages = len(re.findall(r'\[stage \d+/\d+\]', out.stdout))
    assert n_stages > 0 and n_stages == out.stdout.count('done earlier, skipped')
    assert '$ ' not in out.stdout  # no command was run
    assert ckpt.stat().st_mtime == mtime
    assert json.loads((wd / 'summary.json').read_text())['results'] == before['results']


def _chromium():
    for name in ('chromium', 'chromium-browser', 'google-chrome'):
        path = shutil.which(name)
        if path:
            return path
    return None


IMAGE_CHECK = """<script>window.addEventListener('load', function () {
  var out = document.createElement('pre'); out.id = 'image-check';
  out.textContent = JSON.stringify(Array.prototype.map.call(document.images, function (i) {
    return [i.complete, i.naturalWidth, i.naturalHeight]; }));
  document.body.appendChild(out); });</script>"""


def test_report_is_self_contained_and_renders_in_chromium(smoke_job, tmp_path):
    chromium = _chromium()
    if chromium is None:
        if os.environ.get('CI', '').lower() in ('1', 'true', 'yes'):
            pytest.fail('CI is set but chromium is missing: run tools/ci/install_chromium.sh first')
        pytest.skip('chromium is not installed (tools/ci/install_chromium.sh installs it)')
    page = (smoke_job['wd'] / 'report.html').read_text(encoding='utf-8')
    srcs = re.findall(r'<img src="([^"]*)"', page)
    assert len(srcs) >= 5 and all(s.startswith('data:image/') for s in srcs)  # nothing outside the file
    for section in ('Results', 'Loss curves', 'Validation images', '[CLS] attention', 'position field'):
        assert section in page
    assert 'random init' in page and 'posfield (ours)' in page
    checked = tmp_path / 'report_checked.html'  # the report elsewhere: proves it needs no file beside it
    checked.write_text(page.replace('</body>', IMAGE_CHECK + '</body>'), encoding='utf-8')
    out = subprocess.run([chromium, '--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
                          '--virtual-time-budget=10000', '--dump-dom', checked.as_uri()],
                         capture_output=True, text=True, timeout=180)
    m = re.search(r'<pre id="image-check">(.*?)</pre>', out.stdout, re.S)
    assert m, (out.stdout[-2000:] + out.stderr[-2000:])
    images = json.loads(m.group(1))
    assert len(images) == len(srcs)
    assert all(done and w > 0 and h > 0 for done, w, h in images), images


def test_aggregate_mean_std_and_paired_differences():
    from projects.jobs import default_job as job
    rows = [dict(init='posfield (ours)', seed=0, patch_miou=10.0),
            dict(init='posfield (ours)', seed=1, patch_miou=14.0),
            dict(init='random init', seed=0, patch_miou=7.0), dict(init='random init', seed=1, patch_miou=9.0)]
    table, paired = job.aggregate(rows, ['posfield (ours)', 'random init'], [0, 1])
    assert table['posfield (ours)']['patch_miou']['mean'] == 12.0
    assert table['posfield (ours)']['patch_miou']['std'] == pytest.approx(2 ** 1.5)
    assert paired['random init']['patch_miou']['per_seed'] == {'0': 3.0, '1': 5.0}
    assert paired['random init']['patch_miou']['mean'] == 4.0
    assert table['random init']['bbox_mAP'] is None


def test_iteration_lines_are_parsed():
    from projects.common import jobs as job
    m = job.ITER_RE.search('11/30 06:00:01 - mmengine - INFO - Iter(train) [ 20/400]  base_lr: 1.0e-03 lr: ...')
    assert m.groups() == ('train', '20', '400')


def test_is_done_needs_same_settings_and_outputs(tmp_path):
    from projects.common import jobs as job
    out = tmp_path / 'x.pth'
    out.write_text('x')
    job.mark_done(str(tmp_path), dict(iters=4), [str(out)], 1.0)
    assert job.is_done(str(tmp_path), dict(iters=4))
    assert not job.is_done(str(tmp_path), dict(iters=5))
    out.unlink()
    assert not job.is_done(str(tmp_path), dict(iters=4))


def test_seeds_argument():
    from tests.helpers import load_tool
    job = load_tool('tools/run_default_job.py')
    assert job.parse_args(['--seeds', '0,1,2']).seed_list == [0, 1, 2]
    assert job.parse_args(['--seed', '4']).seed_list == [4]
    assert job.parse_args([]).seed_list is None
    with pytest.raises(SystemExit):
        job.parse_args(['--seeds', '0,x'])
    with pytest.raises(SystemExit):
        job.parse_args(['--seeds', '1,1'])
