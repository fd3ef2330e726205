"""tools/train.py on the tiny pre-training config: kill mid-run, resume continues; state restored exactly."""
import os
import os.path as osp
import signal
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest
import torch

from tests.helpers import ROOT, TINY_PRETRAIN, write_images


def _train_cmd(work_dir, data_root, *extra):
    return [sys.executable, osp.join(ROOT, 'tools/train.py'), TINY_PRETRAIN, '--work-dir', str(work_dir),
            '--cfg-options', f'train_dataloader.dataset.data_root={data_root}', *extra]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=ROOT)
    env.pop('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', None)  # must work without it
    return env


def test_kill_then_resume_auto_continues_at_the_next_iteration(tmp_path):
    data = write_images(tmp_path / 'imgs')
    wd = tmp_path / 'wd'
    proc = subprocess.Popen(_train_cmd(wd, data, 'train_cfg.max_iters=40'), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (wd / 'iter_3.pth').exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = sorted(p.name for p in wd.glob('iter_*.pth'))
    assert saved, 'no checkpoint was written before the kill'
    last = max(int(n[5:-4]) for n in saved)
    ckpt = torch.load(wd / f'iter_{last}.pth', weights_only=True)  # complete, and loadable safely
    out = subprocess.run(_train_cmd(wd, data, f'train_cfg.max_iters={last + 2}', '--resume'), env=_env(),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    log = out.stdout + out.stderr
    assert f'resumed epoch: 0, iter: {last}' in log
    assert f'Iter(train) [{last + 1}/{last + 2}]' in log
    assert (wd / f'iter_{last + 2}.pth').exists()
    assert int(ckpt['state_dict']['step']) == last


def test_resume_auto_uses_a_checkpoint_the_record_does_not_name(tmp_path):
    """A kill after ``iter_N.pth`` is written but before ``last_checkpoint`` is: resume from iter_N, not 0."""
    data = write_images(tmp_path / 'imgs')
    wd = tmp_path / 'wd'
    out = subprocess.run(_train_cmd(wd, data, 'train_cfg.max_iters=3'), env=_env(),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    (wd / 'last_checkpoint').unlink()
    out = subprocess.run(_train_cmd(wd, data, 'train_cfg.max_iters=4', '--resume'), env=_env(),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    log = out.stdout + out.stderr
    assert 'resumed epoch: 0, iter: 3' in log
    assert 'Iter(train) [1/4]' not in log and 'Iter(train) [4/4]' in log


def test_resume_restores_teacher_centres_step_and_schedule(tmp_path):
    from mmengine.hooks import Hook
    from mmengine.registry import HOOKS

    from projects.common.runner_setup import build_runner, load_config

    captured = {}

    @HOOKS.register_module(force=True)
    class _CaptureFirstIter(Hook):
        def before_train_iter(self, runner, batch_idx, data_batch=None):
            if not captured:
                model = runner.model
                captured['state'] = {k: v.clone() for k, v in model.state_dict().items()}
                captured['schedule'] = model.schedule()

    data = write_images(tmp_path / 'imgs')
    cfg = load_config(TINY_PRETRAIN, {'train_dataloader.dataset.data_root': data, 'train_cfg.max_iters': 3})
    cfg.work_dir = str(tmp_path / 'wd')
    build_runner(cfg).train()
    saved = torch.load(tmp_path / 'wd' / 'iter_3.pth', weights_only=True)['state_dict']

    cfg = load_config(TINY_PRETRAIN, {'train_dataloader.dataset.data_root': data, 'train_cfg.max_iters': 4})
    cfg.work_dir = str(tmp_path / 'wd')
    cfg.resume = True
    cfg.custom_hooks = [dict(type='_CaptureFirstIter')]
    runner = build_runner(cfg)
    runner.train()
    state = captured['state']
    assert int(state['step']) == 3
    teacher_keys = [k for k in saved if k.startswith('teacher.')]
    centre_keys = [k for k in saved if k.endswith('center')]
    assert teacher_keys and len(centre_keys) == 2
    for k in teacher_keys + centre_keys:
        assert torch.equal(state[k], saved[k]), k
    fresh_schedule = runner.model.schedule(3)
    assert captured['schedule'] == fresh_schedule


# ------------------------------------------------------------------------------ resume is the uninterrupted run
class _Crash(RuntimeError):
    """Stands for a kill: the run stops in the middle, nothing is saved for the iteration."""


def _exact_cfg(data, work_dir, loop: str, workers: int, crash_at=None):
    from projects.common.runner_setup import load_config
    options = {'train_dataloader.dataset.data_root': data, 'train_dataloader.num_workers': workers,
               'train_dataloader.batch_size': 2,
               'train_dataloader.persistent_workers': workers > 0,
               'default_hooks.checkpoint.interval': 2, 'default_hooks.checkpoint.max_keep_ckpts': 10,
               # drop-path on, so the main process's random state matters
               'model.backbone.drop_path_rate': 0.2}
    cfg = load_config(TINY_PRETRAIN, options)
    if loop == 'epoch':  # 6 images of batch 2: 3 iterations an epoch, 2 epochs; checkpoints mid-epoch
        cfg.train_cfg = dict(type='ResumableEpochBasedTrainLoop', max_epochs=2)
        cfg.train_dataloader.sampler = dict(type='DefaultSampler', shuffle=True)
    else:
        cfg.train_cfg = dict(type='ResumableIterBasedTrainLoop', max_iters=6)
    cfg.work_dir = str(work_dir)
    # A runner's MessageHub is a process-wide instance named after the experiment, whose default name has a
    # one-second timestamp: runners built within one second in this process would share runtime info (e.g. the
    # checkpoint hook's keep_ckpt_ids). A resume runs in a new process; a unique name stands for that here.
    cfg.experiment_name = f'{work_dir.name}_{uuid.uuid4().hex}'
    if crash_at is not None:
        cfg.custom_hooks = [dict(type='_CrashAfterIter', at=crash_at)]
    return cfg


def _flatten(obj, prefix=''):
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(_flatten(v, f'{prefix}.{k}' if prefix else str(k)))
        return out
    if isinstance(obj, (list, tuple)):
        out = {}
        for i, v in enumerate(obj):
            out.update(_flatten(v, f'{prefix}[{i}]'))
        return out
    if hasattr(obj, 'state_dict') and not isinstance(obj, torch.Tensor):
        return _flatten(obj.state_dict(), prefix)
    if hasattr(obj, '__dict__') and not isinstance(obj, (torch.Tensor, str, int, float, bool)) and obj is not None:
        return _flatten(vars(obj), prefix)
    return {prefix: obj}


# differ between two runs by design: wall-clock times, the work dir and run name, the config text
_RUN_SPECIFIC = ('meta', 'train/time', 'train/data_time', 'runtime_info.cfg', 'runtime_info.experiment_name',
                 'runtime_info.timestamp', 'runtime_info.last_ckpt', 'resumed_keys', 'train/eta')


def _same_checkpoints(a_path, b_path):
    a = _flatten(torch.load(a_path, weights_only=False))
    b = _flatten(torch.load(b_path, weights_only=False))
    assert set(a) == set(b), sorted(set(a) ^ set(b))
    compared = 0
    for key in sorted(a):
        if any(part in key for part in _RUN_SPECIFIC):
            continue
        x, y = a[key], b[key]
        if isinstance(x, torch.Tensor):
            assert isinstance(y, torch.Tensor) and x.dtype == y.dtype and torch.equal(x, y), key
        elif isinstance(x, np.ndarray):
            assert np.array_equal(x, y), key
        else:
            assert x == y, (key, x, y)
        compared += 1
    return compared


@pytest.mark.parametrize('loop, workers', [('iter', 0), ('epoch', 2)])
def test_resume_after_a_crash_continues_the_run_bit_identically(tmp_path, loop, workers):
    """Crash in iteration 5 (last checkpoint: iteration 4; for the epoch loop in the middle of the second epoch,
    with 2 persistent workers that started a new epoch before the crash), resume: the final checkpoint equals the
    uninterrupted run's in every tensor and number (weights, teacher, centres, optimiser state, schedulers, step
    buffer, message hub, random state). Drop-path is on, so the main process's random state matters too."""
    from mmengine.hooks import Hook
    from mmengine.registry import HOOKS

    from projects.common.runner_setup import build_runner

    @HOOKS.register_module(force=True)
    class _CrashAfterIter(Hook):
        priority = 'VERY_HIGH'  # before the checkpoint hook: iteration 5 is never saved

        def __init__(self, at):
            self.at = at

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            if runner.iter + 1 == self.at:
                raise _Crash(f'crash in iteration {self.at}')

    data = write_images(tmp_path / 'imgs', n=6 if loop == 'epoch' else 12)
    last = 6
    build_runner(_exact_cfg(data, tmp_path / 'straight', loop, workers)).train()
    with pytest.raises(_Crash):
        build_runner(_exact_cfg(data, tmp_path / 'crashed', loop, workers, crash_at=5)).train()
    assert sorted(p.name for p in (tmp_path / 'crashed').glob('iter_*.pth')) == ['iter_2.pth', 'iter_4.pth']
    torch.manual_seed(12345)  # whatever the crashed run left behind must not matter
    np.random.seed(12345)
    cfg = _exact_cfg(data, tmp_path / 'crashed', loop, workers)
    cfg.resume = True
    build_runner(cfg).train()
    compared = _same_checkpoints(tmp_path / 'straight' / f'iter_{last}.pth', tmp_path / 'crashed' / f'iter_{last}.pth')
    assert compared > 100
