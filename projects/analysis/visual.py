"""Small image helpers shared by the analysis tools: loading inputs, heat-map overlays, PCA colouring."""
import os
import os.path as osp
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from .encoding import normalize_images

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')


def list_images(paths: Sequence[str], max_images: Optional[int] = None) -> List[str]:
    """Image files from a mix of files and folders (folders searched recursively, sorted)."""
    out = []
    for p in paths:
        if osp.isdir(p):
            found = sorted(osp.join(root, f) for root, _, files in os.walk(p) for f in files
                           if f.lower().endswith(IMG_EXTENSIONS))
            if not found:
                raise FileNotFoundError(f'no images ({", ".join(IMG_EXTENSIONS)}) under folder {p}')
            out.extend(found)
        elif osp.isfile(p):
            out.append(p)
        else:
            raise FileNotFoundError(f'image or folder not found: {p}')
    return out[:max_images] if max_images else out


def load_rgb(path: str) -> Image.Image:
    try:
        with Image.open(path) as im:
            return im.convert('RGB')
    except Exception as exc:
        raise OSError(f'cannot read image {path}: {exc}') from exc


def to_input(img: Image.Image, size: Tuple[int, int], mean, std) -> Tuple[torch.Tensor, np.ndarray]:
    """Resize an RGB image to ``size`` (h, w), bicubic; returns the normalised ``(1, 3, h, w)`` tensor and the
    resized ``(h, w, 3)`` uint8 image for display."""
    h, w = size
    arr = np.asarray(img.resize((w, h), Image.BICUBIC), dtype=np.uint8)
    x = torch.from_numpy(arr.copy()).permute(2, 0, 1)[None]
    return normalize_images(x, mean, std), arr


def minmax(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    lo, hi = np.nanmin(a), np.nanmax(a)
    return np.zeros_like(a) if hi - lo <= 0 else (a - lo) / (hi - lo)


def upsample_nearest(heat: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Patch-level map ``(h, w)`` -> ``size`` by repeating each patch (no made-up sub-patch detail)."""
    h, w = heat.shape
    ys = (np.arange(size[0]) * h // size[0]).clip(0, h - 1)
    xs = (np.arange(size[1]) * w // size[1]).clip(0, w - 1)
    return heat[ys][:, xs]


def overlay(img: np.ndarray, heat: np.ndarray, alpha: float = 0.6, cmap: str = 'inferno') -> np.ndarray:
    """``img`` (H, W, 3) uint8 blended with a min-max-normalised heat map (any patch grid) -> uint8."""
    import matplotlib
    cm = matplotlib.colormaps[cmap]
    heat = upsample_nearest(minmax(heat), img.shape[:2])
    colour = cm(heat)[..., :3] * 255.0
    return (alpha * colour + (1 - alpha) * img.astype(np.float64)).clip(0, 255).astype(np.uint8)


def pca_fit(x: torch.Tensor, n: int = 3):
    """Principal axes of ``(N, D)`` rows: ``(mean (D,), components (n, D), explained variance ratio (n,))``."""
    x = x.double()
    mean = x.mean(0)
    u, s, vh = torch.linalg.svd(x - mean, full_matrices=False)
    var = s.pow(2)
    ratio = var / var.sum().clamp(min=1e-30)
    return mean, vh[:n], ratio[:n]


def pca_rgb(x: torch.Tensor, mean: torch.Tensor, comps: torch.Tensor,
            lo: Optional[torch.Tensor] = None, hi: Optional[torch.Tensor] = None):
    """Project ``(N, D)`` rows on 3 principal axes and scale each to ``[0, 1]`` with ``lo``/``hi`` (by default
    the 1st/99th percentiles of this projection); returns ``(rgb (N, 3), lo, hi)`` so another set of rows can
    be coloured on the same scale."""
    proj = (x.double() - mean) @ comps.t()
    if proj.shape[1] < 3:  # fewer than 3 channels: pad with grey
        proj = torch.cat([proj, torch.zeros(proj.shape[0], 3 - proj.shape[1], dtype=proj.dtype)], 1)
    if lo is None:
        lo = torch.quantile(proj, 0.01, dim=0)
        hi = torch.quantile(proj, 0.99, dim=0)
    rgb = ((proj - lo) / (hi - lo).clamp(min=1e-12)).clamp(0, 1)
    return rgb.float(), lo, hi


def save_figure(fig, path: str) -> str:
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches='tight')
    import matplotlib.pyplot as plt
    plt.close(fig)
    return path


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (the tools run on headless machines)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt
