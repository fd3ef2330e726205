"""Shared test set-up: the repository root on sys.path (also set by pytest.ini) and project registries."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import pytest  # noqa: E402

import projects.common  # noqa: E402,F401  (torch>=2.6 checkpoint loading, atomic writes)


@pytest.fixture(autouse=True)
def _restore_default_scope():
    """Each test starts with the registry default scope the previous one found: a test that calls
    ``init_default_scope('mmdet')`` must not make the next test build mmpretrain models in mmdet's registry
    (tests pass alone and in any order)."""
    from mmengine.registry import DefaultScope
    saved = dict(DefaultScope._instance_dict)
    yield
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(saved)


@pytest.fixture(scope='session')
def tiny_ssl_ckpt(tmp_path_factory):
    """The tiny PosFieldSSL checkpoint (:func:`tests.helpers.write_tiny_checkpoint`, saved as iteration 6 of its
    run): ``config``, ``checkpoint`` path, ``model`` and its ``state`` dict. Read only."""
    from tests.helpers import TINY_PRETRAIN, write_tiny_checkpoint
    path = tmp_path_factory.mktemp('tiny_checkpoint') / 'iter_6.pth'
    model = write_tiny_checkpoint(path, iter=6)
    return dict(config=TINY_PRETRAIN, checkpoint=str(path), model=model, state=model.state_dict())


def pytest_configure(config):
    config.addinivalue_line('markers', 'configs: runs every shipped config for two steps (tests/test_configs/, '
                                       'minutes); select with -m configs, skip with -m "not configs"')
