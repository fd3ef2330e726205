"""Faults during a run and around it: a NaN loss, launchers without an activated venv, tests run alone."""
import os
import os.path as osp
import subprocess

import pytest
import torch
from torch import nn

from projects.common.hooks import NonFiniteLossError
from tests.helpers import ROOT

VENV_PYTHON = osp.join(ROOT, '.venv', 'bin', 'python')


class _LossBlowsUp(nn.Module):
    """An mmengine model whose ``loss_pos`` term becomes NaN at the 3rd training step."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(2))
        self.steps = 0

    def forward(self, inputs, data_samples=None, mode='loss'):
        self.steps += 1
        bad = float('nan') if self.steps == 3 else 0.0
        return dict(loss_image=(self.w ** 2).sum(), loss_pos=self.w.sum() * 0.1 + bad)


def _runner(work_dir, max_iters=5):
    from mmengine.model import BaseModel
    from mmengine.runner import Runner

    class Model(BaseModel):
        def __init__(self):
            super().__init__()
            self.net = _LossBlowsUp()

        def forward(self, inputs, data_samples=None, mode='loss'):
            return self.net(inputs, data_samples, mode)

    data = [dict(inputs=torch.zeros(2))] * 8
    return Runner(model=Model(), work_dir=str(work_dir), experiment_name=f'nan_{os.getpid()}_{id(work_dir)}',
                  train_dataloader=dict(dataset=data, sampler=dict(type='InfiniteSampler', shuffle=False),
                                        batch_size=1, collate_fn=dict(type='default_collate')),
                  optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
                  train_cfg=dict(by_epoch=False, max_iters=max_iters),
                  default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1, by_epoch=False),
                                     non_finite_loss=dict(type='NonFiniteLossHook')),
                  default_scope='mmengine')


def test_non_finite_loss_stops_training_naming_term_and_iteration(tmp_path):
    import projects.common  # noqa: F401  (registers the hook)
    runner = _runner(tmp_path)
    with pytest.raises(NonFiniteLossError) as err:
        runner.train()
    msg = str(err.value)
    assert msg.startswith('non-finite loss at iteration 3 (epoch 0): loss_pos=nan')
    assert 'loss=nan' in msg and 'finite terms at that step: loss_image=' in msg
    assert f'The last good checkpoint is {tmp_path / "iter_2.pth"}' in msg
    assert sorted(p.name for p in tmp_path.glob('iter_*.pth')) == ['iter_1.pth', 'iter_2.pth']
    good = torch.load(tmp_path / 'iter_2.pth', weights_only=True)['state_dict']
    assert torch.isfinite(good['net.w']).all()


def test_every_shipped_runtime_has_the_non_finite_loss_hook():
    from mmengine.config import Config
    for path in ('configs/posfield/posfield_vit-tiny-p8_1xb4-6iter_cpu-smoke.py',
                 'configs/simclr/simclr_efficientnet-b0_1xb8-10iter_cpu-tiny.py',
                 'configs/localization/clsloc_efficientnet-b0_1xb4-6iter_cpu-tiny.py',
                 'configs/mask_rcnn/mask-rcnn_vit-tiny-p16-posfield_cpu-smoke_coco-format.py'):
        hooks = Config.fromfile(osp.join(ROOT, path)).default_hooks
        assert hooks.get('non_finite_loss', {}).get('type') == 'NonFiniteLossHook', path


def _bare_env(tmp_path):
    """A shell as a new user has it: no venv activated, a PATH without the venv (and no torch)."""
    env = {k: v for k, v in os.environ.items() if k not in ('VIRTUAL_ENV', 'PYTHON', 'PYTHONPATH', 'CONDA_PREFIX')}
    env['PATH'] = f'{tmp_path / "bin"}:/usr/bin:/bin'
    (tmp_path / 'bin').mkdir(exist_ok=True)
    return env


@pytest.mark.skipif(not osp.exists(VENV_PYTHON), reason='the repository has no .venv (tools/install.sh makes it)')
def test_dist_train_uses_the_repository_venv_without_an_activated_one(tmp_path):
    out = subprocess.run(['bash', osp.join(ROOT, 'tools/dist_train.sh'), str(tmp_path / 'missing_config.py'), '1'],
                         env=dict(_bare_env(tmp_path), PORT='29547', OMP_NUM_THREADS='1'),
                         capture_output=True, text=True, timeout=240, cwd=str(tmp_path))
    log = out.stdout + out.stderr
    assert 'No module named' not in log
    assert f'config file not found: {tmp_path / "missing_config.py"}' in log  # tools/train.py ran, under the venv
    assert out.returncode != 0


@pytest.mark.skipif(not osp.exists(VENV_PYTHON), reason='the repository has no .venv (tools/install.sh makes it)')
@pytest.mark.parametrize('script, args', [('slurm_train.sh', ['part', 'job', 'cfg.py', 'wd']),
                                          ('slurm_test.sh', ['part', 'job', 'cfg.py', 'ckpt.pth'])])
def test_slurm_launchers_use_the_repository_venv(tmp_path, script, args):
    env = _bare_env(tmp_path)
    srun = tmp_path / 'bin' / 'srun'
    srun.write_text('#!/bin/sh\necho "srun $*"\n')  # stands in for Slurm: shows the command it would run
    srun.chmod(0o755)
    out = subprocess.run(['bash', osp.join(ROOT, 'tools', script)] + args, env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert f'{ROOT}/.venv/bin/python -u {ROOT}/tools/{script.replace("slurm_", "")[:-3]}.py cfg.py' in out.stdout
    env['PYTHON'] = '/opt/other/python'  # an explicit choice still wins
    out = subprocess.run(['bash', osp.join(ROOT, 'tools', script)] + args, env=env, capture_output=True, text=True,
                         timeout=60)
    assert '/opt/other/python -u' in out.stdout


def test_multicrop_builds_its_view_pipelines_without_a_default_scope():
    """Run alone, tests/test_datasets/test_pos_field_multicrop.py failed: no runner had set mmpretrain as the
    default scope, and the colour jitter was looked up in mmengine's root registry."""
    from mmengine.registry import DefaultScope

    from projects.posfield.datasets.transforms import PosFieldMultiCrop
    saved = DefaultScope._instance_dict.copy()
    DefaultScope._instance_dict.clear()  # as in a fresh process: no runner has set a scope
    try:
        assert DefaultScope.get_current_instance() is None
        t = PosFieldMultiCrop(global_crops_size=16, local_crops_size=8, local_crops_number=1, seed=0)
    finally:
        DefaultScope._instance_dict.update(saved)
    names = [type(x).__name__ for p in t.global_pipelines for x in p.transforms]
    assert 'RandomApply' in names


class _DiskFullFile:
    """A file whose writes stop with ENOSPC after ``room`` bytes, as on a full disk (the bytes before are written)."""

    def __init__(self, f, room):
        self.f, self.room = f, room

    def write(self, data):
        import errno
        self.f.write(bytes(data[:self.room]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def _disk_full_for(monkeypatch, name_part, room=10):
    """Writes through ``os.fdopen`` to a temporary file whose name contains ``name_part`` fail with ENOSPC."""
    real = os.fdopen

    def fdopen(fd, *args, **kwargs):
        f = real(fd, *args, **kwargs)
        return _DiskFullFile(f, room) if name_part in os.readlink(f'/proc/self/fd/{fd}') else f

    monkeypatch.setattr(os, 'fdopen', fdopen)


def test_disk_full_during_a_write_names_the_file_and_keeps_the_previous_one(tmp_path, monkeypatch):
    import errno

    from projects.common.checkpoint import FileWriteError, atomic_write_bytes
    target = tmp_path / 'metrics.json'
    atomic_write_bytes(b'{"old": 1}', target)
    _disk_full_for(monkeypatch, '.metrics.json.')
    with pytest.raises(FileWriteError) as err:
        atomic_write_bytes(b'{"new": 2, "longer": true}', target)
    assert str(err.value) == (f'cannot write {target}: No space left on device (free space in {tmp_path}, or write '
                              f'elsewhere). Nothing was replaced: {target} is unchanged: the previous file is kept, '
                              'and the partial temporary file was removed.')
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(target) and isinstance(err.value, OSError)
    assert target.read_bytes() == b'{"old": 1}' and [p.name for p in tmp_path.iterdir()] == ['metrics.json']


def test_disk_full_during_a_checkpoint_stops_training_naming_the_file(tmp_path, monkeypatch):
    """CheckpointHook writes iter_1.pth, then iter_2.pth hits a full disk: the tool's one-line error names iter_2.pth,
    and iter_1.pth is intact."""
    import projects.common  # noqa: F401  (the atomic backend and the hook)
    from projects.common.checkpoint import load_checkpoint_file
    from projects.common.runner_setup import exit_on_bad_input
    runner = _runner(tmp_path, max_iters=2)  # the loss only blows up at step 3
    _disk_full_for(monkeypatch, '.iter_2.pth.', room=100)
    monkeypatch.setattr('sys.argv', ['train.py'])
    with pytest.raises(SystemExit) as exc:
        exit_on_bad_input(runner.train)
    target = tmp_path / 'iter_2.pth'
    assert exc.value.code == (f'train.py: error: cannot write {target}: No space left on device (free space in '
                              f'{tmp_path}, or write elsewhere). Nothing was replaced: {target} was not created, and '
                              'the partial temporary file was removed.')
    assert not target.exists() and not list(tmp_path.glob('.*.tmp'))
    state = load_checkpoint_file(tmp_path / 'iter_1.pth')  # complete, as written
    assert state['meta']['iter'] == 1 and set(state['state_dict']) == {'net.w'}
