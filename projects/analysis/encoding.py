"""Running a frozen ViT backbone for analysis: normalise images, get its final-normed [CLS] and patch tokens.

Works with a plain mmpretrain ``VisionTransformer`` and with any backbone that has
``forward_tokens(x, boxes=...)`` (e.g. a position-field ViT, whose inputs occupy a window of its canvas).
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn


def canvas_boxes(batch: int, box: Optional[Tuple[float, float, float, float]], device) -> Optional[torch.Tensor]:
    if box is None:
        return None
    return torch.tensor([list(box)], dtype=torch.float32, device=device).expand(batch, 4)


@torch.no_grad()
def encode(backbone: nn.Module, x: torch.Tensor,
           box: Optional[Tuple[float, float, float, float]] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Final-normed ``(cls (B, D), patches (B, N, D))`` of a batch.

    ``box``: the canvas window ``(x0, y0, x1, y1)`` the images occupy in a position-field backbone (None: the
    whole canvas). A plain mmpretrain ViT ignores it.
    """
    if hasattr(backbone, 'forward_tokens'):
        return backbone.forward_tokens(x, boxes=canvas_boxes(x.shape[0], box, x.device))
    # Plain mmpretrain VisionTransformer: ask this instance (not the class) for the raw last-block tokens.
    saved = backbone.out_type, backbone.out_indices
    backbone.out_type, backbone.out_indices = 'raw', [len(backbone.layers) - 1]
    try:
        tokens = backbone(x)[-1]
    finally:
        backbone.out_type, backbone.out_indices = saved
    n = int(getattr(backbone, 'num_extra_tokens', 1))
    return tokens[:, 0], tokens[:, n:]


def normalize_images(imgs: torch.Tensor, mean, std, bgr_to_rgb: bool = False) -> torch.Tensor:
    """``(B, 3, H, W)`` uint8/float images (0-255) -> normalised float32, optionally BGR -> RGB first."""
    x = imgs.float()
    if bgr_to_rgb:
        x = x.flip(1)
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s
