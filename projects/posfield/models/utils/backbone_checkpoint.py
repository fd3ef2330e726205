"""Backbone loading with a coverage check: one implementation for every package, in
:mod:`projects.common.backbone_loader`; re-exported here for the detector and the analysis tools."""
from projects.common.backbone_loader import (IGNORED_SOURCE_KEYS, KEYS, PREFIXES,  # noqa: F401
                                             CheckpointMismatchError, load_backbone_weights, read_state_dict,
                                             select_backbone)

__all__ = ['IGNORED_SOURCE_KEYS', 'KEYS', 'PREFIXES', 'CheckpointMismatchError', 'load_backbone_weights',
           'read_state_dict', 'select_backbone']
