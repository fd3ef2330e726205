"""tools/analysis/results_table.py: one line per metrics JSON that tools/test.py --out wrote."""
import json
import os
import subprocess
import sys

import pytest

from projects.report import results_table
from tests.helpers import ROOT


def _write(path, metrics, ckpt='iter_4.pth'):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(config='c.py', checkpoint=f'/x/{ckpt}', metrics=metrics)))


def test_table_lists_every_run_in_percent(tmp_path):
    _write(tmp_path / 'det_random' / 'metrics.json', {'coco/bbox_mAP': 0.023, 'coco/segm_mAP': 0.022,
                                                      'coco/bbox_mAP_l': -1.0})
    _write(tmp_path / 'det_posfield' / 'metrics.json', {'coco/bbox_mAP': 0.025, 'coco/segm_mAP': 0.027,
                                                        'loc/acc_iou50': 41.5})
    _write(tmp_path / 'extra' / 'voc_test.json', {'loc/top1': 60.0}, ckpt='epoch_3.pth')
    (tmp_path / 'det_random' / 'scalars.json').write_text('{"loss": 1.0}\n{"loss": 0.9}\n')  # not ours: skipped
    (tmp_path / 'summary.json').write_text(json.dumps({'results': []}))  # JSON of another shape: skipped

    runs = results_table.find_runs(str(tmp_path))
    assert [name for name, _ in runs] == ['det_posfield', 'det_random', os.path.join('extra', 'voc_test.json')]
    keys = results_table.column_keys(runs)
    assert keys == ['coco/bbox_mAP', 'coco/bbox_mAP_l', 'coco/segm_mAP', 'loc/acc_iou50', 'loc/top1']
    lines = results_table.render(runs, keys).splitlines()
    assert lines[0] == '| run | checkpoint | ' + ' | '.join(keys) + ' |'
    assert lines[2] == '| det_posfield | iter_4.pth | 2.5 | - | 2.7 | 41.50 | - |'
    assert lines[3] == '| det_random | iter_4.pth | 2.3 | - | 2.2 | - | - |'
    assert len(lines) == 5

    csv_text = results_table.render(runs, ['coco/segm_mAP'], 'csv')
    assert csv_text.splitlines() == ['run,checkpoint,coco/segm_mAP', 'det_posfield,iter_4.pth,2.7',
                                     'det_random,iter_4.pth,2.2', f'{os.path.join("extra", "voc_test.json")},'
                                     'epoch_3.pth,-']


def test_cli_writes_the_table_and_fails_clearly(tmp_path):
    _write(tmp_path / 'runs' / 'a' / 'metrics.json', {'coco/bbox_mAP': 0.5})
    tool = os.path.join(ROOT, 'tools', 'analysis', 'results_table.py')
    out = subprocess.run([sys.executable, tool, str(tmp_path / 'runs'), '--out', str(tmp_path / 't.md')],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert '| a | iter_4.pth | 50.0 |' in out.stdout
    assert (tmp_path / 't.md').read_text() == out.stdout

    empty = subprocess.run([sys.executable, tool, str(tmp_path / 'runs' / 'a' / 'none')],
                           capture_output=True, text=True)
    assert empty.returncode != 0 and 'is not a folder' in empty.stderr
    (tmp_path / 'nothing').mkdir()
    none = subprocess.run([sys.executable, tool, str(tmp_path / 'nothing')], capture_output=True, text=True)
    assert none.returncode == 1 and 'no metrics JSON' in none.stderr
    with pytest.raises(FileNotFoundError, match='not a folder'):
        results_table.find_runs(str(tmp_path / 'missing'))
