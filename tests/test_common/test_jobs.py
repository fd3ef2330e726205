"""The job tools' stage runner: whole output logged, key lines echoed, a failing stage named with its log tail."""
import sys

import pytest

from projects.common.jobs import run_logged


def test_output_logged_and_key_lines_echoed(tmp_path, capsys):
    code = "print('Iter [1/2] step'); print('noise'); print('result: 3')"
    seen = []
    run_logged([sys.executable, '-c', code], str(tmp_path / 'logs' / 'stage.log'), str(tmp_path),
               echo=('result:', ), on_line=lambda line: seen.append(line) or line.startswith('Iter'))
    assert (tmp_path / 'logs' / 'stage.log').read_text() == 'Iter [1/2] step\nnoise\nresult: 3\n'
    out = capsys.readouterr().out
    assert '   result: 3' in out and 'noise' not in out.split('\n', 1)[1] and '   Iter' not in out
    assert len(seen) == 3


def test_failing_stage_names_the_command_and_its_last_lines(tmp_path):
    code = "import sys; [print(f'line {i}') for i in range(40)]; sys.exit(3)"
    with pytest.raises(SystemExit) as err:
        run_logged([sys.executable, '-c', code], str(tmp_path / 'stage.log'), str(tmp_path))
    msg = str(err.value)
    assert msg.startswith('stage failed (exit 3): ') and 'line 39' in msg and 'line 9\n' not in msg
    assert f'last lines of {tmp_path / "stage.log"}' in msg


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_progress_eta_from_priors_then_from_measured_rates(monkeypatch, capsys):
    from projects.common import jobs
    clock = _Clock()
    monkeypatch.setattr(jobs.time, 'time', clock)
    monkeypatch.setattr(jobs, 'children_cpu_seconds', lambda: 0.0)
    stages = [dict(name='a', kind='pre', units=10), dict(name='b', kind='det', units=5),
              dict(name='c', kind='det', units=5, done=True), dict(name='d', kind='det', units=5)]
    progress = jobs.Progress(stages, dict(pre=2.0, det=1.0))
    assert progress.eta() == 10.0  # b and d from their prior (c is done), nothing measured yet
    progress.begin(stages[0])
    assert '[stage 1/4] a: started  (elapsed 0:00:00, ETA 0:00:30)' in capsys.readouterr().out  # 20 + 5 + 5
    clock.now += 40.0  # 4 s per unit: twice the prior, so the unmeasured kind is scaled by 2 as well
    progress.end(stages[0])
    assert progress.rate == dict(pre=4.0) and progress.eta() == 20.0
    assert '   a: finished in 0:00:40 (CPU 0 s)' in capsys.readouterr().out
    progress.begin(stages[1])
    on_line = progress.watch(stages[1])
    clock.now += 3.0
    assert on_line('Iter(train) [ 1/5]  lr: 1e-3') and on_line('Iter(val) [2/9]') and not on_line('loss: 1.0')
    assert '   b: iter 1/5  (stage 0:00:03, stage ETA 0:00:12, job ETA 0:00:22)' in capsys.readouterr().out
    clock.now += 12.0
    progress.end(stages[1])
    assert progress.rate['det'] == 3.0 and progress.eta() == 15.0  # d at the measured 3 s per unit
    progress.begin(stages[2])
    assert 'c: done earlier, skipped' in capsys.readouterr().out


def test_progress_with_relative_priors_knows_no_eta_until_a_stage_is_timed(monkeypatch, capsys):
    from projects.common import jobs
    clock = _Clock()
    monkeypatch.setattr(jobs.time, 'time', clock)
    stages = [dict(name='data', kind='data', units=0), dict(name='pre', kind='pre', units=10),
              dict(name='ft', kind='ft', units=4), dict(name='report', kind='report', units=0)]
    progress = jobs.Progress(stages, dict(pre=2.0, ft=1.0), priors_in_seconds=False)
    progress.begin(stages[0])
    assert 'ETA unknown' in capsys.readouterr().out
    clock.now += 7.0
    progress.end(stages[0])
    assert progress.eta() is None  # the data stage has no cost units: it says nothing about the rate
    progress.begin(stages[1])
    clock.now += 50.0
    progress.end(stages[1])  # 5 s per unit against a relative cost of 2: the fine-tuning's 4 units take 10 s
    assert progress.eta() == 10.0
    progress.begin(stages[2])
    progress.end(stages[2], skipped=True)
    assert '   ft: skipped (output complete)' in capsys.readouterr().out and progress.eta() == 0.0
