"""Shared test set-up: the repository root on sys.path (also set by pytest.ini) and project registries."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import projects.common  # noqa: E402,F401  (torch>=2.6 checkpoint loading, atomic writes)


def pytest_configure(config):
    config.addinivalue_line('markers', 'configs: runs every shipped config for two steps (tests/test_configs/, '
                                       'minutes); select with -m configs, skip with -m "not configs"')
