"""Evaluation of position-field backbones: loading a pre-trained backbone for analysis (and the canvas window
its inputs occupy), and :class:`KNNEvalHook` (mmpretrain ``HOOKS``) for use during pre-training.

The method-independent analysis code (attention statistics, k-NN, linear probe, feature extraction, figures) is
in :mod:`projects.analysis`; the command-line tools are in ``tools/analysis/``; definitions in docs/analysis.md.
"""
from .backbone_loader import CheckpointMismatchError, LoadedBackbone, canvas_box_for, load_backbone
from .knn_eval_hook import KNNEvalHook

__all__ = ['CheckpointMismatchError', 'LoadedBackbone', 'canvas_box_for', 'load_backbone', 'KNNEvalHook']
