"""Evaluation of position-field backbones: the canvas window an un-cropped input occupies
(:func:`canvas_box_for`) and :class:`KNNEvalHook` (mmpretrain ``HOOKS``) for use during pre-training.

Pre-trained backbones are loaded by :func:`projects.common.backbone_loader.load_backbone`; the
method-independent analysis code (attention statistics, k-NN, linear probe, feature extraction, figures) is in
:mod:`projects.analysis`; the command-line tools are in ``tools/analysis/``; definitions in docs/analysis.md.
"""
from .canvas import canvas_box_for
from .knn_eval_hook import KNNEvalHook

__all__ = ['canvas_box_for', 'KNNEvalHook']
