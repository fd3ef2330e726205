"""Builders shared by the bad-input tests: broken files, log capture, tool runs."""
import logging
import os
import struct
import subprocess
import sys
import uuid
import zlib

from tests.helpers import ROOT


def png_header(width, height):
    """A PNG whose header claims ``width`` x ``height`` (RGB) but whose pixel data is a few bytes: PIL reads the
    size without allocating anything, as it would for a real 20000 x 10000 scan."""
    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff)
    ihdr = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'IDAT', zlib.compress(b'\0' * 16)) + chunk(b'IEND', b'')


class LogCapture:
    """Collect what ``print_log(..., logger='current')`` writes, through a fresh current MMLogger."""

    def __init__(self, caplog):
        from mmengine.logging import MMLogger
        self.caplog = caplog
        logger = MMLogger.get_instance(f'bad_input_{uuid.uuid4().hex}')  # now the 'current' logger
        logger.addHandler(caplog.handler)  # an MMLogger has no parent logger to propagate to
        caplog.handler.setLevel(logging.INFO)

    @property
    def warnings(self):
        return [r.getMessage() for r in self.caplog.records if r.levelno >= logging.WARNING]

    @property
    def text(self):
        return '\n'.join(r.getMessage() for r in self.caplog.records)


def tool_env(**extra):
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=ROOT)
    env.pop('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', None)
    env.update(extra)
    return env


def run_tool(args, timeout=300, cwd=None, env=None):
    """Run ``python tools/...`` (or any argv) and return (returncode, stdout + stderr)."""
    if args[0].endswith('.py'):
        args = [sys.executable, os.path.join(ROOT, args[0])] + list(args[1:])
    out = subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=cwd or ROOT,
                         env=env or tool_env())
    return out.returncode, out.stdout + out.stderr


def run_tool_in_process(name, argv):
    """``tools/NAME.py`` main run here as its ``__main__`` block runs it: returns (exit status, message).
    Saves the interpreter start and imports for rows that are about the input, not the process."""
    from projects.common.runner_setup import exit_on_bad_input
    from tests.helpers import load_tool
    module = load_tool(f'tools/{name}.py')
    try:
        exit_on_bad_input(module.main, argv)
    except SystemExit as exc:
        return (1 if isinstance(exc.code, str) else exc.code), str(exc.code)
    return 0, ''
