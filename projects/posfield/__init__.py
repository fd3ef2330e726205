"""Crop-aligned position fields with dual masked prediction (Liu, Suganuma, Okatani, ICML 2025).

Importing this package registers the pre-training pipeline, models and engine pieces into mmpretrain's
registries. The detection side lives in :mod:`projects.posfield.det` (mmdet registries) and is imported
by the detection configs only.
"""
import projects.common  # noqa: F401  (checkpoint compatibility, atomic writes)

from . import batch, datasets, engine, evaluation, models  # noqa: F401,E402
