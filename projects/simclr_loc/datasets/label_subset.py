"""Deterministic, class-stratified label fractions ("train with 1 % / 10 % / ... of the labels").

Rule: the images of each class ``c`` (by their target label) are put in a fixed order - sorted by a stable
key (source folder, image id), then permuted by a generator seeded with ``(seed, c)`` - and the first
``ceil(fraction * n_c)`` are kept. Consequences:

* **deterministic**: the same images for the same data, fraction and seed, whatever the order of the split
  files or of ``sources``;
* **stratified**: every class keeps its share, and at least one image (so 1 % of VOC still sees all
  20 classes); the size is exactly ``sum_c ceil(fraction * n_c)``, i.e. a little above ``fraction * N``;
* **nested**: for one seed a smaller fraction's subset is contained in every larger fraction's subset
  (each class takes a longer prefix of the same order), so label-fraction curves differ only by added data.
"""
from __future__ import annotations

import math
from typing import Hashable, List, Sequence

import numpy as np


def stratified_subset(labels: Sequence[int], keys: Sequence[Hashable], fraction: float, seed: int) -> List[int]:
    """Indices (sorted ascending) of the kept items; see the module docstring for the rule.

    Args:
        labels: class label of each item.
        keys: a stable, unique sort key of each item (e.g. ``(source, image_id)``).
        fraction: share of each class to keep, in (0, 1].
        seed: the subset seed.
    """
    if not isinstance(fraction, (int, float)) or not 0.0 < float(fraction) <= 1.0:
        raise ValueError(f'label_fraction must be a number in (0, 1], got {fraction!r}')
    if len(labels) != len(keys):
        raise ValueError(f'stratified_subset: {len(labels)} labels but {len(keys)} keys')
    if len(set(keys)) != len(keys):
        raise ValueError('stratified_subset: the keys are not unique (the same image listed twice?)')
    if float(fraction) == 1.0:
        return list(range(len(labels)))
    by_class = {}
    for idx, label in enumerate(labels):
        by_class.setdefault(int(label), []).append(idx)
    kept = []
    for label, members in sorted(by_class.items()):
        members = sorted(members, key=lambda i: keys[i])
        order = np.random.default_rng([int(seed), label]).permutation(len(members))
        take = math.ceil(float(fraction) * len(members) - 1e-9)  # 0.07 * 100 is 7.000000000000001
        kept.extend(members[i] for i in order[:take])
    return sorted(kept)
