"""The default job's smoke preset runs end to end on data the test makes (no download) and writes its metrics."""
import json
import os
import subprocess
import sys

from tests.det_helpers import write_coco
from tests.helpers import ROOT, write_images


def test_default_job_smoke(tmp_path):
    unlabeled = write_images(tmp_path / 'pool', n=12)
    coco = write_coco(tmp_path / 'coco', n_train=4, n_val=2)
    wd = tmp_path / 'job'
    env = dict(os.environ, OMP_NUM_THREADS='1')
    out = subprocess.run([sys.executable, os.path.join(ROOT, 'tools/run_default_job.py'), '--preset', 'smoke',
                          '--work-dir', str(wd), '--unlabeled', unlabeled, '--coco', coco, '--workers', '0',
                          '--seed', '3'],
                         env=env, capture_output=True, text=True, timeout=1200, cwd=ROOT)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    summary = json.loads((wd / 'summary.json').read_text())
    assert [r['init'] for r in summary['results']] == ['posfield (ours)', 'random init']
    for row in summary['results']:
        for key in ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75', 'segm_mAP', 'segm_mAP_50', 'segm_mAP_75'):
            assert isinstance(row[key], float) and -1.0 <= row[key] <= 1.0
    for stage in ('det_posfield', 'det_random'):
        metrics = json.loads((wd / stage / 'metrics.json').read_text())['metrics']
        assert 'coco/bbox_mAP' in metrics and 'coco/segm_mAP' in metrics
    assert (wd / 'pretrain_posfield' / 'backbone.pth').exists()
    assert 'loaded' in (wd / 'det_posfield' / 'stage.log').read_text()  # the teacher went into the detector
    assert summary['seed'] == 3
    for stage in ('pretrain_posfield', 'det_posfield', 'det_random'):  # every training stage ran with that seed
        assert 'seed: 3' in (wd / stage / 'stage.log').read_text()
    assert 'AP box' in out.stdout and summary['data']['classes'] == ['ellipse', 'rectangle', 'triangle']
