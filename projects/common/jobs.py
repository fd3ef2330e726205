"""The runner mechanics of the multi-stage jobs (:mod:`projects.jobs`): one stage as a logged subprocess, stage
progress with the job's ETA, resuming (a finished stage's ``done.json``), and the preset, date and hardware of a
job's summary.
"""
import datetime
import json
import os
import os.path as osp
import re
import resource
import subprocess
import time
from typing import Callable, Dict, List, Optional, Sequence

# The repository root: every stage command runs from it (the tools' and configs' relative paths).
REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# mmengine's iteration log line: ``Iter(train) [ 40/400]``.
ITER_RE = re.compile(r'Iter\((train|val|test)\)\s*\[\s*(\d+)/(\d+)\]')


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


def clock(seconds: float) -> str:
    """``H:MM:SS`` of a duration (negative durations print as zero)."""
    seconds = int(max(seconds, 0))
    return f'{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}'


def children_cpu_seconds() -> float:
    """User + system CPU seconds of every finished child process of this one (the stages' commands)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def preset_with_overrides(presets: Dict[str, dict], name: str, **overrides) -> dict:
    """A copy of ``presets[name]`` with each given override (not None, not 0) in place of the preset's value."""
    preset = dict(presets[name])
    preset.update({key: value for key, value in overrides.items() if value})
    return preset


def utc_stamp() -> str:
    """The date of a job's summary: now, in UTC, to the minute."""
    return datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')


def done_path(folder: str) -> str:
    return osp.join(folder, 'done.json')


def is_done(folder: str, settings: dict) -> bool:
    """A stage is done when it wrote done.json for the same settings (its outputs were complete then) and the
    files it lists still exist."""
    path = done_path(folder)
    if not osp.isfile(path):
        return False
    try:
        with open(path) as f:
            done = json.load(f)
    except (OSError, json.JSONDecodeError):
        return False
    return done.get('settings') == settings and all(osp.isfile(p) for p in done.get('outputs', []))


def mark_done(folder: str, settings: dict, outputs: Sequence[str], seconds: float) -> None:
    """Write ``folder/done.json`` (atomically): the stage's settings, its outputs and how long it took."""
    tmp = done_path(folder) + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(dict(settings=settings, outputs=list(outputs), seconds=round(seconds, 1)), f, indent=1)
    os.replace(tmp, done_path(folder))


class Progress:
    """Stage bookkeeping of a multi-stage job: a line per stage with elapsed time and job ETA, live iteration
    counts, the measured seconds per unit of each stage kind that the ETA uses, and the CPU seconds of each stage's
    commands (``cpu_s``; on a shared machine they say more about the cost than the wall time).

    ``stages``: dicts with ``name``, ``kind``, ``units`` (iterations, or 1) and optionally ``done`` (finished in an
    earlier run: skipped, costs nothing). ``priors``: seconds per unit of each kind, for the ETA until a stage of
    that kind has run, scaled by how much slower than their priors the measured kinds ran; with
    ``priors_in_seconds=False`` they are relative costs only, and the ETA is unknown until a stage has been timed.
    """

    def __init__(self, stages: List[dict], priors: Dict[str, float], started: Optional[float] = None,
                 priors_in_seconds: bool = True):
        self.stages, self.priors, self.priors_in_seconds = stages, priors, priors_in_seconds
        self.started = time.time() if started is None else started
        self.index, self.stage_started, self._cpu0 = 0, self.started, 0.0
        self.rate: Dict[str, float] = {}
        self.cpu_s: Dict[str, float] = {}

    def _scale(self) -> Optional[float]:
        ratios = [self.rate[k] / self.priors[k] for k in self.rate if self.priors.get(k, 0) > 0]
        if ratios:
            return sum(ratios) / len(ratios)
        return 1.0 if self.priors_in_seconds else None

    def _estimate(self, stage: dict, scale: Optional[float]) -> Optional[float]:
        kind, units = stage['kind'], stage['units']
        if kind in self.rate:
            return units * self.rate[kind]
        prior = self.priors.get(kind, 0.0)
        if not prior:
            return 0.0
        return None if scale is None else units * prior * scale

    def eta(self, stage_left: float = 0.0) -> Optional[float]:
        """Seconds left: ``stage_left`` plus the estimates of the stages after the current one (None: unknown)."""
        scale = self._scale()
        rest = [self._estimate(s, scale) for s in self.stages[self.index + 1:] if not s.get('done')]
        return None if None in rest else stage_left + sum(rest)

    def _eta_text(self, stage_left: float = 0.0) -> str:
        eta = self.eta(stage_left)
        return 'unknown' if eta is None else clock(eta)

    def begin(self, stage: dict) -> None:
        self.index = self.stages.index(stage)
        self.stage_started = time.time()
        self._cpu0 = children_cpu_seconds()
        state = 'done earlier, skipped' if stage.get('done') else 'started'
        this = 0.0 if stage.get('done') else self._estimate(stage, self._scale())
        eta = 'unknown' if this is None else self._eta_text(this)
        print(f'[stage {self.index + 1}/{len(self.stages)}] {stage["name"]}: {state}  '
              f'(elapsed {clock(time.time() - self.started)}, ETA {eta})', flush=True)

    def iteration(self, stage: dict, mode: str, it: int, total: int) -> None:
        """A training iteration ``it`` of ``total`` logged by the stage (other modes are ignored)."""
        if mode != 'train':
            return
        spent = time.time() - self.stage_started
        left = spent / max(it, 1) * (total - it)
        print(f'   {stage["name"]}: iter {it}/{total}  (stage {clock(spent)}, stage ETA {clock(left)}, '
              f'job ETA {self._eta_text(left)})', flush=True)

    def watch(self, stage: dict) -> Callable[[str], bool]:
        """An ``on_line`` for :func:`run_logged`: mmengine's training iteration lines become progress lines."""
        def on_line(line: str) -> bool:
            m = ITER_RE.search(line)
            if m:
                self.iteration(stage, m.group(1), int(m.group(2)), int(m.group(3)))
            return m is not None
        return on_line

    def end(self, stage: dict, skipped: bool = False) -> None:
        """The stage finished (``skipped``: its outputs were complete already; it is not timed)."""
        if skipped:
            stage['done'] = True
            print(f'   {stage["name"]}: skipped (output complete)', flush=True)
            return
        spent = time.time() - self.stage_started
        cpu = children_cpu_seconds() - self._cpu0
        self.rate[stage['kind']] = spent / max(stage['units'], 1)
        self.cpu_s[stage['name']] = round(cpu, 1)
        print(f'   {stage["name"]}: finished in {clock(spent)} (CPU {cpu:.0f} s)', flush=True)
