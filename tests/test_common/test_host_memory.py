"""apply_host_memory / keep_freed_host_memory: a freed large tensor's memory is reused without page faults; the
default releases it."""
import os
import subprocess
import sys

import pytest

from projects.common.host_memory import KEEP_FREED_ENV
from tests.helpers import ROOT

# Allocates and frees a 128 MiB tensor, then prints the minor page faults of allocating 64 MiB (which fits in the
# freed memory; glibc's memalign padding keeps an equal-sized request from reusing a freed block exactly).
_PROBE = """
import resource, sys
sys.path.insert(0, {root!r})
import torch
from projects.common.host_memory import apply_host_memory
assert apply_host_memory(sys.argv[1]) == sys.argv[1]
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
x = torch.ones(32 * 2 ** 20)
del x
before = faults()
y = torch.ones(16 * 2 ** 20)
print(faults() - before)
"""


def _second_allocation_faults(mode, env=None):
    out = subprocess.run([sys.executable, '-c', _PROBE.format(root=ROOT), mode], capture_output=True, text=True,
                         check=True, env=dict(os.environ, **(env or {})))
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc malloc settings')
def test_kept_memory_is_reused_without_page_faults():
    pages = 64 * 2 ** 20 // 4096  # 16384 pages of 4 KiB
    assert _second_allocation_faults('release') > pages // 2  # glibc: mmap'd, unmapped on free, faulted again
    assert _second_allocation_faults('keep') < pages // 20  # the freed heap memory is reused
    # the environment form, which the benchmark gives a process it does not own (the reference)
    assert _second_allocation_faults('release', env=KEEP_FREED_ENV) < pages // 20


def test_unknown_choice_is_refused():
    from projects.common.host_memory import apply_host_memory
    with pytest.raises(ValueError, match="'keep', 'release'"):
        apply_host_memory('hold')


def test_train_tool_keeps_host_memory_by_default():
    from tests.helpers import load_tool
    train = load_tool('tools/train.py')
    assert train.parse_args(['cfg.py']).host_memory == 'keep'
    assert train.parse_args(['cfg.py', '--host-memory', 'release']).host_memory == 'release'
