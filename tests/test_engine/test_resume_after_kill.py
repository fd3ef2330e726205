"""tools/train.py on the tiny pre-training config: kill mid-run, resume continues; state restored exactly."""
import os
import os.path as osp
import signal
import subprocess
import sys
import time

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
