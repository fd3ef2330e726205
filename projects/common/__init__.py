"""Pieces every project package and tool needs, imported for their side effects.

* :mod:`.checkpoint` makes mmengine checkpoints load under torch >= 2.6 (``weights_only``) without any
  environment variable, and makes local checkpoint writes atomic.
* :mod:`.hooks` registers ``NonFiniteLossHook`` (stop at the first NaN/Inf loss) in mmengine's root registry.
* :mod:`.config_errors` turns mmengine's bare "X is not in the registry" into a message naming the
  config file, the key and the registries searched.
"""
from .checkpoint import (
                         AtomicLocalBackend,
                         CheckpointFileError,
                         NotACheckpointError,
                         UnsafeCheckpointError,
                         load_checkpoint_file,
                         register_checkpoint_safe_globals,
)
from .config_errors import UnknownTypeError, explain_build_error
from .errors import BadInputError
from .hooks import NonFiniteLossError, NonFiniteLossHook

register_checkpoint_safe_globals()

__all__ = ['AtomicLocalBackend', 'CheckpointFileError', 'NotACheckpointError', 'UnsafeCheckpointError',
           'load_checkpoint_file', 'register_checkpoint_safe_globals', 'UnknownTypeError', 'explain_build_error',
           'BadInputError', 'NonFiniteLossError', 'NonFiniteLossHook']
