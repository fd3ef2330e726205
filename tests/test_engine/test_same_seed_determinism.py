"""Same seed, same worker count: two pre-training runs end with identical weights (docs/reliability.md)."""
import torch

from projects.common.runner_setup import build_runner, load_config
from tests.helpers import TINY_PRETRAIN, write_images


def _train(tmp_path, name, data, seed):
    cfg = load_config(TINY_PRETRAIN, {'train_dataloader.dataset.data_root': data, 'train_cfg.max_iters': 2,
                                      'randomness.seed': seed})
    cfg.work_dir = str(tmp_path / name)
    cfg.default_hooks.checkpoint.interval = 2
    build_runner(cfg).train()
    return torch.load(tmp_path / name / 'iter_2.pth', weights_only=True)


def test_same_seed_gives_identical_weights_and_another_seed_does_not(tmp_path):
    data = write_images(tmp_path / 'imgs')
    a, b, other = (_train(tmp_path, n, data, s) for n, s in (('a', 3), ('b', 3), ('c', 4)))
    assert a['state_dict'].keys() == b['state_dict'].keys()
    for key, value in a['state_dict'].items():
        assert torch.equal(value, b['state_dict'][key]), key
    for key, value in a['optimizer']['state'].items():
        for name, tensor in value.items():
            if isinstance(tensor, torch.Tensor):
                assert torch.equal(tensor, b['optimizer']['state'][key][name]), (key, name)
    # the check can fail: a different seed gives different weights
    assert any(not torch.equal(v, other['state_dict'][k]) for k, v in a['state_dict'].items())
