"""Checkpoints: atomic writes and loading under torch's weights_only default."""
import os

import pytest
import torch

from projects.common.checkpoint import AtomicLocalBackend, atomic_write_bytes, latest_checkpoint


def test_atomic_write_keeps_old_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / 'iter_1.pth'
    atomic_write_bytes(b'old', target)

    def boom(fd):
        raise KeyboardInterrupt  # a kill between write and rename

    monkeypatch.setattr(os, 'fsync', boom)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(b'new-and-longer', target)
    assert target.read_bytes() == b'old'
    assert [p.name for p in tmp_path.iterdir()] == ['iter_1.pth']  # no temporary left behind


def test_mmengine_save_checkpoint_goes_through_atomic_backend(tmp_path):
    from mmengine.fileio import get_file_backend
    from mmengine.runner.checkpoint import save_checkpoint
    assert isinstance(get_file_backend(str(tmp_path / 'a.pth')), AtomicLocalBackend)
    save_checkpoint({'state_dict': {'w': torch.ones(2)}}, str(tmp_path / 'a.pth'))
    assert torch.equal(torch.load(tmp_path / 'a.pth', weights_only=True)['state_dict']['w'], torch.ones(2))


def test_runner_checkpoint_loads_with_weights_only(tmp_path):
    """A checkpoint with mmengine's message hub (HistoryBuffer, numpy scalars) loads with weights_only=True."""
    import numpy as np
    from mmengine.logging import MessageHub
    from mmengine.runner.checkpoint import save_checkpoint
    hub = MessageHub.get_instance('weights_only_test')
    hub.update_scalar('train/loss', np.float64(0.5))
    hub.update_scalar('train/lr', 0.1)
    hub.update_info('iter', 3)
    ckpt = dict(meta=dict(epoch=1, iter=3, seed=np.int64(7), dtype=np.dtype('float32'),
                          arr=np.arange(3, dtype=np.float32)),
                message_hub=hub.state_dict(), state_dict={'w': torch.zeros(1)})
    save_checkpoint(ckpt, str(tmp_path / 'c.pth'))
    loaded = torch.load(tmp_path / 'c.pth', weights_only=True)
    assert loaded['meta']['seed'] == 7
    restored = MessageHub.get_instance('weights_only_restore')
    restored.load_state_dict(loaded['message_hub'])
    assert restored.get_scalar('train/loss').current() == pytest.approx(0.5)


def _touch(path, mtime):
    path.write_bytes(b'x')
    os.utime(path, ns=(mtime, mtime))
    return str(path)


def test_latest_checkpoint_is_the_newest_file_not_the_stale_record(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    assert latest_checkpoint(tmp_path / 'missing') is None
    old = _touch(tmp_path / 'iter_3.pth', 1_000)
    _touch(tmp_path / 'best_coco_bbox_mAP_iter_9.pth', 5_000)  # not a resume point
    _touch(tmp_path / 'iter_3.pth.bak', 5_000)
    assert latest_checkpoint(tmp_path) == old  # no last_checkpoint record at all
    (tmp_path / 'last_checkpoint').write_text(old)
    new = _touch(tmp_path / 'iter_6.pth', 2_000)  # killed before the record was updated
    assert latest_checkpoint(tmp_path) == new
    elsewhere = _touch(tmp_path.parent / 'resumed_from.pth', 3_000)
    (tmp_path / 'last_checkpoint').write_text(elsewhere)
    assert latest_checkpoint(tmp_path) == elsewhere
