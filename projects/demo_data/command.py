"""What the main of a data-building tool (tools/data/) does around the build."""
import sys
import time
from typing import Callable, Dict

from .sources import DemoDataError


def run_build(tool: str, build: Callable[[], Dict], report: Callable[[Dict, float], None]) -> int:
    """``build()``, then ``report(manifest, seconds taken)``: exit status 0. Bad input or a failed download
    (:class:`DemoDataError`) is one ``<tool>: error: ...`` line on stderr instead: exit status 1."""
    t0 = time.time()
    try:
        manifest = build()
    except DemoDataError as e:
        print(f'{tool}: error: {e}', file=sys.stderr)
        return 1
    report(manifest, time.time() - t0)
    return 0
