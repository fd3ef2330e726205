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
