"""Two CPU processes (gloo) through tools/dist_train.sh: the run completes and both ranks log the same loss."""
import os
import re
import subprocess
import sys

from tests.helpers import ROOT, TINY_PRETRAIN, write_images


def test_dist_train_two_ranks_agree(tmp_path):
    data = write_images(tmp_path / 'imgs')
    wd = tmp_path / 'wd'
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHON=sys.executable, PORT='29531')
    cfg = tmp_path / 'tiny_with_rank_hook.py'
    cfg.write_text(f"_base_ = ['{TINY_PRETRAIN}']\n"
                   "custom_imports = dict(imports=['projects.posfield', 'tests.rank_loss_hook'])\n"
                   "custom_hooks = [dict(type='LogLossEveryRankHook')]\n")
    cmd = ['bash', os.path.join(ROOT, 'tools/dist_train.sh'), str(cfg), '2', '--work-dir', str(wd),
           '--cfg-options', f'train_dataloader.dataset.data_root={data}', 'train_cfg.max_iters=2']
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=str(tmp_path))
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    losses = {}
    for rank, it, loss in re.findall(r'RANKLOSS rank=(\d) iter=(\d+) loss=([0-9.e+-]+)', out.stdout + out.stderr):
        losses.setdefault(int(it), {})[int(rank)] = float(loss)
    assert set(losses) == {0, 1}, out.stdout[-2000:]
    for it, per_rank in losses.items():
        assert set(per_rank) == {0, 1}
        # the logged loss is all-reduced (mean over ranks) by the hook, so both ranks must agree exactly
        assert per_rank[0] == per_rank[1]
    assert (wd / 'iter_2.pth').exists()
