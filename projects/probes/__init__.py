"""Method-independent frozen-feature probes on COCO-format data (docs/evidence.md): a linear per-patch
classifier scored by mIoU and a k-NN probe on instance crops, with raw-pixel and all-background floors.
The command-line tool is ``tools/analysis/dense_probe.py``."""
from .coco_patches import (IGNORE, CocoProbeDataError, CocoSplit, instance_crops, load_split, patch_labels,
                           semantic_map)
from .dense import (ProbeData, all_background_miou, backbone_patch_encoder, confusion_matrix, floor_rows, miou,
                    probe_row, raw_pixel_encoder, summarise, train_patch_probe)

__all__ = [
    'IGNORE', 'CocoProbeDataError', 'CocoSplit', 'instance_crops', 'load_split', 'patch_labels', 'semantic_map',
    'ProbeData', 'all_background_miou', 'backbone_patch_encoder', 'confusion_matrix', 'floor_rows', 'miou',
    'probe_row', 'raw_pixel_encoder', 'summarise', 'train_patch_probe',
]
