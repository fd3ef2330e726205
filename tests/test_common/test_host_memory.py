"""cpu_tuning.apply(host_memory=...): a freed large tensor's memory is reused without page faults where 'keep' is
applied, not in a process forked afterwards (a data loader worker), not with 'release'; the tools apply the CPU
tuning only when they train on the CPU."""
import os
import subprocess
import sys

import pytest

from projects.common import cpu_tuning
from projects.common.cpu_tuning import KEEP_FREED_ENV
from tests.helpers import ROOT

# Allocates and frees a 128 MiB tensor, then prints the minor page faults of allocating 64 MiB (which fits in the
# freed memory; glibc's memalign padding keeps an equal-sized request from reusing a freed block exactly); with
# 'fork' as the second argument, in a child forked after apply().
_PROBE = """
import os, resource, sys
sys.path.insert(0, {root!r})
import torch
from projects.common import cpu_tuning
assert cpu_tuning.apply(host_memory=sys.argv[1])['host_memory'] == sys.argv[1]
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def probe():
    x = torch.ones(32 * 2 ** 20)
    del x
    before = faults()
    y = torch.ones(16 * 2 ** 20)
    print(faults() - before, flush=True)
if sys.argv[2:] == ['fork']:
    pid = os.fork()
    if pid == 0:
        probe()
        os._exit(0)
    os.waitpid(pid, 0)
else:
    probe()
"""


def _second_allocation_faults(mode, env=None, fork=False):
    out = subprocess.run([sys.executable, '-c', _PROBE.format(root=ROOT), mode] + (['fork'] if fork else []),
                         capture_output=True, text=True, check=True, env=dict(os.environ, **(env or {})))
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc malloc settings')
def test_kept_memory_is_reused_without_page_faults():
    pages = 64 * 2 ** 20 // 4096  # 16384 pages of 4 KiB
    assert _second_allocation_faults('release') > pages // 2  # glibc: mmap'd, unmapped on free, faulted again
    assert _second_allocation_faults('keep') < pages // 20  # the freed heap memory is reused
    # a process forked after apply (a data loader worker) is back to glibc's defaults
    assert _second_allocation_faults('keep', fork=True) > pages // 2
    # the environment form, which the benchmark gives a process it does not own (the reference)
    assert _second_allocation_faults('release', env=KEEP_FREED_ENV) < pages // 20


def test_unknown_choice_is_refused():
    with pytest.raises(ValueError, match="'keep', 'release'"):
        cpu_tuning.apply(host_memory='hold')


def test_train_tool_applies_the_cpu_tuning_only_without_cuda(monkeypatch):
    import torch

    from projects.common.runs import apply_cpu_tuning
    from tests.helpers import load_tool
    train = load_tool('tools/train.py')
    assert train.parse_args(['cfg.py']).host_memory == 'keep'
    args = train.parse_args(['cfg.py', '--host-memory', 'release'])
    assert args.host_memory == 'release'
    calls = []
    monkeypatch.setattr(cpu_tuning, 'apply', lambda **kw: calls.append(kw) or dict(kw))
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert apply_cpu_tuning(args.host_memory) == {} and calls == []  # a CUDA run: nothing applied
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert apply_cpu_tuning(args.host_memory) == dict(host_memory='release') and calls == [dict(host_memory='release')]
