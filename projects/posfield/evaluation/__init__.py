"""Evaluation and analysis of pre-trained backbones (method.md section 4): attention statistics, k-NN and
linear probes on frozen features, and :class:`KNNEvalHook` (mmpretrain ``HOOKS``) for use during pre-training.
The command-line tools are in ``tools/analysis/``; definitions are in ``docs/analysis.md``."""
from .attention_recorder import AttentionRecorder, attention_weights
from .attention_stats import (attention_distance, cls_attention_features, cluster_nmi, entropy, kmeans,
                              masks_to_patch_labels, mutual_information, nmi, patch_centres)
from .backbone_loader import CheckpointMismatchError, LoadedBackbone, encode, load_backbone, normalize_images
from .features import (build_labelled_dataset, build_loader, eval_pipeline, extract_features, feature_variant,
                       labelled_dataset_cfg)
from .knn import knn_classify, knn_scores, topk_accuracy
from .knn_eval_hook import KNNEvalHook
from .linear_probe import train_linear_probe

__all__ = [
    'AttentionRecorder', 'attention_weights', 'attention_distance', 'cls_attention_features', 'cluster_nmi',
    'entropy', 'kmeans', 'masks_to_patch_labels', 'mutual_information', 'nmi', 'patch_centres',
    'CheckpointMismatchError', 'LoadedBackbone', 'encode', 'load_backbone', 'normalize_images',
    'build_labelled_dataset', 'build_loader', 'eval_pipeline', 'extract_features', 'feature_variant',
    'labelled_dataset_cfg', 'knn_classify', 'knn_scores', 'topk_accuracy', 'KNNEvalHook', 'train_linear_probe',
]
