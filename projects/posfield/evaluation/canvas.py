"""The canvas window an un-cropped image occupies in a position-field backbone (for analysis and k-NN).

Definitions: docs/analysis.md ("Which weights", ``--placement``).
"""
from typing import Optional, Tuple


def _find_transform(node, type_name: str):
    if isinstance(node, dict):
        if str(node.get('type', '')).split('.')[-1] == type_name:
            return node
        node = list(node.values())
    if isinstance(node, (list, tuple)):
        for value in node:
            found = _find_transform(value, type_name)
            if found is not None:
                return found
    return None


def canvas_box_for(cfg, placement: str = 'whole') -> Optional[Tuple[float, float, float, float]]:
    """Canvas window of an un-cropped image: ``'whole'`` (None: the whole canvas, as the detector places its
    input) or ``'mean'`` (the mean pre-training placement of the config: ``train_dataloader.collate_fn.placement``
    or the ``PosFieldMultiCrop`` transform's, Beta(2, 5) when the config states none)."""
    if placement == 'whole':
        return None
    if placement != 'mean':
        raise ValueError(f"placement must be 'whole' or 'mean', got {placement!r}")
    from projects.posfield.batch.placement import DEFAULT_PLACEMENT, mean_placement
    loader = (cfg.get('train_dataloader') or {}) if cfg is not None else {}
    pre = loader.get('collate_fn') or {}
    crop = _find_transform(loader or None, 'PosFieldMultiCrop')
    place_cfg = dict(pre.get('placement') or (crop or {}).get('placement') or DEFAULT_PLACEMENT)
    p = mean_placement(**place_cfg)
    return (p.ox, p.oy, p.ox + p.s, p.oy + p.s)
