"""Running one stage of a multi-stage job (the default job, the localisation job) as a logged subprocess."""
import os
import os.path as osp
import subprocess
from typing import Callable, Optional, Sequence


def run_logged(cmd: Sequence[str], log_path: str, cwd: str, echo: Sequence[str] = (),
               on_line: Optional[Callable[[str], bool]] = None, width: int = 220) -> None:
    """Run ``cmd`` from ``cwd`` (also put on PYTHONPATH), keep its whole output in ``log_path``, print the lines
    that contain one of ``echo`` (unless ``on_line`` consumed them: it returns True), and stop the job with the
    command and the last 30 lines of its log when it fails."""
    os.makedirs(osp.dirname(log_path), exist_ok=True)
    print('$ ' + ' '.join(cmd), flush=True)
    env = dict(os.environ, PYTHONPATH=cwd + os.pathsep + os.environ.get('PYTHONPATH', ''))
    with open(log_path, 'w') as log:
        proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                cwd=cwd)
        for line in proc.stdout:
            log.write(line)
            if on_line is not None and on_line(line):
                continue
            if any(k in line for k in echo):
                print('   ' + line.rstrip()[:width], flush=True)
        code = proc.wait()
    if code != 0:
        with open(log_path) as f:
            tail = ''.join(f.readlines()[-30:])
        raise SystemExit(f'stage failed (exit {code}): {" ".join(cmd)}\n--- last lines of {log_path} ---\n{tail}')
