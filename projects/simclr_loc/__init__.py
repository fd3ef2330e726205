"""SimCLR-pretrained EfficientNet for object localisation (Vilabella et al., arXiv 2602.16322).

Importing this package registers into mmpretrain's registries:

* datasets: ``VOCLocalizationDataset`` (one target object per image, label fractions);
  transform ``BoxPreservingRandomCrop``;
* models: ``ClsLocModel`` (classify-and-localise, init random / SimCLR / supervised / ImageNet-Lite0),
  ``ClsLocHead``, ``EfficientNetLite`` (offline ImageNet-supervised baseline backbone);
* metrics: ``LocalizationMetric`` (top-k, mean IoU, Acc@IoU; also scores mmdet detector outputs, use it
  there as ``type='mmpretrain.LocalizationMetric'``).

SimCLR pre-training itself is mmpretrain's ``SimCLR`` with its ``EfficientNet``; see configs/simclr/ and
docs/localization.md.
"""
import projects.common  # noqa: F401  (checkpoint compatibility, atomic writes)

from . import datasets, evaluation, models  # noqa: F401,E402
