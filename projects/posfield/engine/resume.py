"""Resume that continues the interrupted run exactly (docs/reliability.md, "Resume").

Every random draw of a training step has a source that resume restores or replays:

* the batch (crops, photometric augmentation, placement, masks) is drawn in the dataloader (the pipeline and
  ``multiview_collate``), from the workers' random state (seeded by mmengine's ``worker_init_fn``) or, with
  ``num_workers=0``, from the main process's. A resumed run loads the batches it already trained on again
  (mmengine's ``IterBasedTrainLoop`` does; :class:`ResumableEpochBasedTrainLoop` does it inside the epoch), so the
  workers reach the same state;
* the main process's draws (drop-path, any device-side augmentation: Python ``random``, numpy, torch CPU and CUDA)
  are saved into every checkpoint by :class:`RandomStateHook` and restored after the dataloader was advanced,
  right before the first batch the resumed run trains on is loaded.

The loops also seed the workers of each epoch from (seed, epoch), and start new workers each epoch: persistent
workers would carry their random state from epoch to epoch, a state that a run resumed in a later epoch cannot
rebuild without loading every earlier epoch again.
"""
import logging
import random
from functools import partial
from typing import Optional

import numpy as np
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS, LOOPS
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop

STATE_KEY = 'random_state'


def capture_random_state() -> dict:
    """The main process's random state as tensors and ints (loadable with ``torch.load(weights_only=True)``)."""
    version, keys, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = dict(
        python=dict(version=version, keys=torch.tensor(keys, dtype=torch.int64), gauss=gauss),
        numpy=dict(name=np_name, keys=torch.from_numpy(np_keys.astype(np.int64)), pos=int(np_pos),
                   has_gauss=int(np_has_gauss), gauss=float(np_gauss)),
        torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_random_state(state: dict) -> None:
    """Set the main process's random state from :func:`capture_random_state`'s output."""
    py = state['python']
    random.setstate((int(py['version']), tuple(int(k) for k in py['keys'].tolist()), py['gauss']))
    npy = state['numpy']
    np.random.set_state((npy['name'], npy['keys'].numpy().astype(np.uint32), int(npy['pos']), int(npy['has_gauss']),
                         float(npy['gauss'])))
    torch.set_rng_state(state['torch'].cpu())
    cuda = state.get('cuda')
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Saves the main process's random state into every checkpoint and restores it on resume.

    The restore belongs between advancing the dataloader and loading the first batch to train on; the
    ``Resumable*TrainLoop`` loops call :meth:`restore_pending` there. Under another loop it happens before the
    first resumed iteration (exact where the batches come from worker processes). Checkpoints are written by rank 0
    only, so in a distributed run the other ranks keep their freshly seeded state.
    """

    priority = 'VERY_LOW'

    def __init__(self):
        self._pending: Optional[dict] = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint[STATE_KEY] = capture_random_state()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # only a resume continues the run; loading weights (load_from) starts a new one
        self._pending = checkpoint.get(STATE_KEY) if runner._resume else None
        if runner._resume and self._pending is None:
            print_log('the checkpoint holds no random state (written before RandomStateHook): the resumed run '
                      'continues with freshly seeded random draws', logger='current', level=logging.WARNING)

    def restore_pending(self) -> None:
        if self._pending is not None and get_rank() == 0:
            restore_random_state(self._pending)
        self._pending = None

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self.restore_pending()  # a no-op where the loop restored it already


def _restore(runner) -> None:
    for hook in runner.hooks:
        if isinstance(hook, RandomStateHook):
            hook.restore_pending()


class _RestoreAfter:
    """An iterator that calls ``restore`` once, before the item after the first ``skip`` ones is loaded."""

    def __init__(self, iterator, skip: int, restore):
        self._iterator, self._left, self._restore = iterator, skip, restore

    def __iter__(self):
        return self

    def __next__(self):
        if self._left == 0:
            self._restore()
        self._left -= 1
        return next(self._iterator)


@LOOPS.register_module()
class ResumableIterBasedTrainLoop(IterBasedTrainLoop):
    """mmengine's ``IterBasedTrainLoop`` (which loads the trained-on batches again on resume), with the main
    process's random state restored right after them (:class:`RandomStateHook`)."""

    def run(self) -> torch.nn.Module:
        if self._iter > 0:
            self.dataloader_iterator = _RestoreAfter(self.dataloader_iterator, self._iter,
                                                     partial(_restore, self.runner))
        return super().run()


def epoch_worker_seed(seed: int, epoch: int) -> int:
    """The workers' seed of an epoch: ``seed`` itself in epoch 0, a fresh value from (seed, epoch) after."""
    if epoch == 0:
        return seed
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0] & 0x7FFFFFFF)


@LOOPS.register_module()
class ResumableEpochBasedTrainLoop(EpochBasedTrainLoop):
    """mmengine's ``EpochBasedTrainLoop``, resumable in the middle of an epoch and exactly.

    mmengine restarts a resumed epoch from its first batch (training on batches again). Here the batches of that
    epoch that the checkpoint already trained on are loaded and skipped, then the main process's random state is
    restored (:class:`RandomStateHook`) and training continues with the next batch. Each epoch's workers are new
    ones seeded from (seed, epoch) (:func:`epoch_worker_seed`; with persistent workers the dataloader's worker
    processes are replaced at each epoch start), so a resumed epoch's batches are those of the uninterrupted run.
    """

    def run_epoch(self) -> None:
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        skip = self._iter - self._epoch * len(self.dataloader)
        if skip < 0 or skip > len(self.dataloader):
            raise RuntimeError(f'resumed at iteration {self._iter}, which is not in epoch {self._epoch} of '
                               f'{len(self.dataloader)} iterations: the checkpoint comes from another dataloader '
                               f'length (batch size, data set or world size changed)')
        self._seed_workers()
        if skip == 0:
            _restore(self.runner)
        iterator = iter(self.dataloader)
        if skip:
            print_log(f'skipping the {skip} batches of epoch {self._epoch} trained on before the resume',
                      logger='current')
            iterator = _RestoreAfter(iterator, skip, partial(_restore, self.runner))
            for _ in range(skip):
                next(iterator)
        for idx, data_batch in enumerate(iterator, start=skip):
            self.run_iter(idx, data_batch)
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1

    def _seed_workers(self) -> None:
        loader = self.dataloader
        init_fn = getattr(loader, 'worker_init_fn', None)
        if not loader.num_workers or not isinstance(init_fn, partial) or 'seed' not in init_fn.keywords:
            return
        if not hasattr(self, '_base_worker_seed'):
            self._base_worker_seed = init_fn.keywords['seed']
        loader.worker_init_fn = partial(init_fn.func, *init_fn.args,
                                        **{**init_fn.keywords,
                                           'seed': epoch_worker_seed(self._base_worker_seed, self._epoch)})
        if loader.persistent_workers:
            loader._iterator = None  # new workers (with this epoch's seed) at the next iter()
