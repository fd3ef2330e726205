"""Sinkhorn-Knopp and the centre update across ranks: 2 gloo processes against the single-process reference."""
import importlib.util
import os
import os.path as osp
import socket
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

CENTERING = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))),
                     'projects/posfield/models/losses/centering.py')


def _centering_module():
    # Loaded from its file: the spawned workers then need torch only, not the whole package.
    spec = importlib.util.spec_from_file_location('centering_under_test', CENTERING)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _worker(rank, world, port, chunks, temp, out_dir, op='sinkhorn'):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=world, timeout=timedelta(seconds=60))
    try:
        torch.set_num_threads(1)
        module = _centering_module()
        if op == 'sinkhorn':
            out = module.sinkhorn_knopp(chunks[rank], temp)
        else:  # the centre after one update from this rank's rows
            centering = module.TeacherCentering(chunks[rank].shape[1], center_momentum=temp)
            centering.center.fill_(1.0)
            centering.update(chunks[rank])
            out = centering.center
        torch.save(out, osp.join(out_dir, f'rank{rank}.pt'))
    finally:
        dist.destroy_process_group()


def _run_two_ranks(chunks, temp, tmp_path, op='sinkhorn'):
    ctx = mp.get_context('spawn')
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, 2, port, chunks, temp, str(tmp_path), op)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        p.terminate()
    assert not alive, 'a rank hung in the Sinkhorn-Knopp collectives'
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    return [torch.load(tmp_path / f'rank{r}.pt') for r in range(2)]


@pytest.mark.parametrize('rows', [(5, 3), (6, 0)], ids=['uneven', 'one-rank-empty'])
def test_two_ranks_equal_one_rank_on_the_same_rows(tmp_path, rows):
    gen = torch.Generator().manual_seed(0)
    # Rank 1's logits sit far above rank 0's: a per-rank max shift would reweigh the ranks against each other.
    chunks = [torch.randn(rows[0], 7, generator=gen), 3.0 + torch.randn(rows[1], 7, generator=gen)]
    temp = 0.1
    reference = _centering_module().sinkhorn_knopp(torch.cat(chunks), temp)
    got = _run_two_ranks(chunks, temp, tmp_path)
    assert got[0].shape == (rows[0], 7) and got[1].shape == (rows[1], 7)
    assert torch.allclose(torch.cat(got), reference, rtol=1e-5, atol=1e-7)
    assert torch.allclose(reference.sum(1), torch.ones(sum(rows)), atol=1e-5)


@pytest.mark.parametrize('rows', [(5, 1), (4, 0)], ids=['uneven', 'one-rank-empty'])
def test_centre_is_the_mean_of_the_ranks_means(tmp_path, rows):
    """DINOv2's iBOT centre (``reduce_center_update``): each rank's mean of its masked tokens, averaged over the
    ranks, so a rank's tokens weigh by its share of ranks, not of tokens; a rank without rows is left out."""
    gen = torch.Generator().manual_seed(1)
    chunks = [torch.randn(rows[0], 6, generator=gen), 5.0 + torch.randn(rows[1], 6, generator=gen)]
    momentum = 0.9
    means = [c.mean(0, keepdim=True) for c in chunks if len(c)]
    want = momentum * 1.0 + (1 - momentum) * torch.cat(means).mean(0, keepdim=True)
    got = _run_two_ranks(chunks, momentum, tmp_path, op='centre')
    for centre in got:
        assert torch.allclose(centre, want, atol=1e-6)
    token_weighted = momentum + (1 - momentum) * torch.cat(chunks).mean(0, keepdim=True)
    assert rows[1] == 0 or not torch.allclose(got[0], token_weighted, atol=1e-3)
