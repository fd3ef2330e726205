"""Pieces every project package and tool needs, imported for their side effects.

* :mod:`.checkpoint` makes mmengine checkpoints load under torch >= 2.6 (``weights_only``) without any
  environment variable, and makes local checkpoint writes atomic.
* :mod:`.config_errors` turns mmengine's bare "X is not in the registry" into a message naming the
  config file, the key and the registries searched.
"""
from .checkpoint import AtomicLocalBackend, register_checkpoint_safe_globals
from .config_errors import UnknownTypeError, explain_build_error

register_checkpoint_safe_globals()

__all__ = ['AtomicLocalBackend', 'register_checkpoint_safe_globals', 'UnknownTypeError',
           'explain_build_error']
