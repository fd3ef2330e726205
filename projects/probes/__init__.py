"""Method-independent frozen-feature probes on COCO-format data (docs/evidence.md): a linear per-patch
classifier scored by mIoU, a k-NN probe on instance crops and a linear localisation probe (box edges from each
patch inside an instance, scored by IoU), with raw-pixel and trivial-predictor floors.
The command-line tool is ``tools/analysis/dense_probe.py``."""
from .box_probe import (
                        BoxSamples,
                        box_samples,
                        box_scores,
                        constant_box_floor,
                        decode_boxes,
                        encode_targets,
                        train_box_probe,
)
from .coco_patches import (
                        IGNORE,
                        CocoProbeDataError,
                        CocoSplit,
                        instance_boxes,
                        instance_crops,
                        load_split,
                        patch_labels,
                        semantic_map,
)
from .dense import (
                        ProbeData,
                        all_background_miou,
                        backbone_patch_encoder,
                        confusion_matrix,
                        floor_rows,
                        miou,
                        probe_row,
                        raw_pixel_encoder,
                        summarise,
                        train_patch_probe,
)

__all__ = [
    'BoxSamples', 'box_samples', 'box_scores', 'constant_box_floor', 'decode_boxes', 'encode_targets',
    'train_box_probe', 'IGNORE', 'CocoProbeDataError', 'CocoSplit', 'instance_boxes', 'instance_crops', 'load_split',
    'patch_labels', 'semantic_map',
    'ProbeData', 'all_background_miou', 'backbone_patch_encoder', 'confusion_matrix', 'floor_rows', 'miou',
    'probe_row', 'raw_pixel_encoder', 'summarise', 'train_patch_probe',
]
