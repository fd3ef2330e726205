"""DINO's photometric view augmentation, batched on the model's device with per-sample random parameters.

The data-loader workers then only decode, crop, resize and flip (``PosFieldMultiCrop(photometric=False)``);
this module draws, per view of every image, the same operations with the same probabilities and parameter
ranges as the worker path (:data:`~projects.posfield.datasets.transforms.pos_field_multicrop.DINO_GLOBAL_TRANSFORMS`,
DINO, Caron et al. 2021; DINOv2, Oquab et al. 2023): colour jitter (brightness, contrast, saturation, hue in
a random order per sample, torchvision's definitions), grayscale, Gaussian blur, solarisation, in that order.
The operations are kornia's; every sample's parameters and coin flips are drawn on the device, and an operation
that does not fire for a sample is replaced by the identity for it (``torch.where``), so nothing waits on the
host.
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from kornia.color import rgb_to_grayscale
from kornia.enhance import solarize
from kornia.filters import filter2d_separable, get_gaussian_kernel1d
from mmpretrain.registry import MODELS
from torch import nn

OPS = ('jitter', 'grayscale', 'blur', 'solarize')
# Per view, the probability of each operation, as the worker path's DINO recipe: global view 1 always blurred,
# global view 2 rarely blurred and sometimes solarised, local views blurred half the time.
DINO_GLOBAL_RECIPES = (dict(jitter=0.8, grayscale=0.2, blur=1.0, solarize=0.0),
                       dict(jitter=0.8, grayscale=0.2, blur=0.1, solarize=0.2))
DINO_LOCAL_RECIPE = dict(jitter=0.8, grayscale=0.2, blur=0.5, solarize=0.0)
# The jitter's four operations; each sample applies them in its own random order (torchvision's ColorJitter).
JITTER_OPS = ('brightness', 'contrast', 'saturation', 'hue')


def _check_recipe(recipe, where: str) -> Tuple[float, ...]:
    if not isinstance(recipe, dict) or set(recipe) - set(OPS):
        raise ValueError(f'{where} must be a dict with keys from {OPS}, got {recipe!r}')
    probs = tuple(float(recipe.get(op, 0.0)) for op in OPS)
    if not all(0.0 <= p <= 1.0 for p in probs):
        raise ValueError(f'{where}: probabilities must be in [0, 1], got {recipe!r}')
    return probs


@MODELS.register_module()
class MultiCropPhotometric(nn.Module):
    """Photometric augmentation of a multi-crop batch, per view group, on the views' device.

    Args:
        global_recipes: per global view (used in turn, as ``PosFieldMultiCrop``'s ``global_transforms``), the
            probability of each operation of :data:`OPS`; missing keys are 0.
        local_recipe: the same for every local view.
        brightness, contrast, saturation: the jitter factor is drawn from ``U(1 - x, 1 + x)`` (clipped at 0).
        hue: the hue shift is drawn from ``U(-hue, hue)`` turns.
        blur_sigma: the Gaussian blur's standard deviation is drawn from ``U(*blur_sigma)`` pixels; the kernel
            spans +-3 sigma of the largest and repeats the edge pixels (PIL's ``GaussianBlur`` on the worker path).
        solarize_threshold: pixel values (0-255) at or above it are inverted.
        grayscale_weights: R, G, B weights of the grayscale operation (normalised to sum 1).
        channel_order: ``'bgr'`` (what ``LoadRGBImage`` gives) or ``'rgb'``: the channel order of the views in
            and out; the operations themselves are defined on RGB.
        seed: a fixed random stream (tests); by default the device's global generator, which mmengine seeds.

    ``forward(views)`` takes the list of view batches ``(B, 3, H, W)`` (uint8 or float, values 0-255, globals
    first) and returns float views 0-255 in the same channel order; views of one size are augmented together.
    """

    def __init__(self, global_recipes: Sequence[dict] = DINO_GLOBAL_RECIPES, local_recipe: dict = DINO_LOCAL_RECIPE,
                 brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.2, hue: float = 0.1,
                 blur_sigma: Tuple[float, float] = (0.1, 2.0), solarize_threshold: float = 128,
                 grayscale_weights: Sequence[float] = (0.2989, 0.587, 0.114), channel_order: str = 'bgr',
                 seed: Optional[int] = None):
        super().__init__()
        if not global_recipes:
            raise ValueError('MultiCropPhotometric: global_recipes must list at least one recipe')
        self.global_probs = [_check_recipe(r, f'global_recipes[{i}]') for i, r in enumerate(global_recipes)]
        self.local_probs = _check_recipe(local_recipe, 'local_recipe')
        for name, value in (('brightness', brightness), ('contrast', contrast), ('saturation', saturation)):
            if value < 0:
                raise ValueError(f'MultiCropPhotometric: {name} must be >= 0, got {value}')
        if not 0 <= hue <= 0.5:
            raise ValueError(f'MultiCropPhotometric: hue must be in [0, 0.5] turns, got {hue}')
        if not 0 < blur_sigma[0] <= blur_sigma[1]:
            raise ValueError(f'MultiCropPhotometric: blur_sigma must be (low, high) with 0 < low <= high, '
                             f'got {blur_sigma}')
        if channel_order not in ('bgr', 'rgb'):
            raise ValueError(f"MultiCropPhotometric: channel_order must be 'bgr' or 'rgb', got {channel_order!r}")
        self.ranges = dict(brightness=(max(0.0, 1 - brightness), 1 + brightness),
                           contrast=(max(0.0, 1 - contrast), 1 + contrast),
                           saturation=(max(0.0, 1 - saturation), 1 + saturation), hue=(-hue, hue),
                           sigma=tuple(float(s) for s in blur_sigma))
        self.kernel_size = 2 * math.ceil(3 * self.ranges['sigma'][1]) + 1
        self.solarize_threshold = float(solarize_threshold)
        weights = torch.tensor(grayscale_weights, dtype=torch.float32)
        self.register_buffer('grayscale_weights', weights / weights.sum(), persistent=False)
        self.channel_order = channel_order
        self.seed = seed
        self._generators: Dict[torch.device, torch.Generator] = {}
        self._probs: Dict[tuple, torch.Tensor] = {}

    def _generator(self, device: torch.device) -> Optional[torch.Generator]:
        if self.seed is None:
            return None
        if device not in self._generators:
            self._generators[device] = torch.Generator(device).manual_seed(self.seed)
        return self._generators[device]

    def view_probs(self, num_views: int, num_global: int, device) -> torch.Tensor:
        """``(num_views, len(OPS))``: each view's operation probabilities, cached on ``device``."""
        key = (num_views, num_global, torch.device(device))
        if key not in self._probs:  # one host-to-device copy per layout, not per step
            rows = [self.global_probs[v % len(self.global_probs)] if v < num_global else self.local_probs
                    for v in range(num_views)]
            self._probs[key] = torch.tensor(rows, dtype=torch.float32, device=device)
        return self._probs[key]

    def sample_params(self, probs: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Per-sample parameters for samples with operation probabilities ``probs`` ``(N, len(OPS))``.

        Returns bool ``(N,)`` ``jitter`` / ``grayscale`` / ``blur`` / ``solarize`` (whether each fires), float
        ``(N,)`` ``brightness`` / ``contrast`` / ``saturation`` factors, ``hue`` (turns) and ``sigma`` (pixels),
        and ``order`` long ``(N, 4)``: the indices into :data:`JITTER_OPS` in the order the jitter applies them.
        """
        n, device = probs.shape[0], probs.device
        u = torch.rand(n, len(OPS) + 5, device=device, generator=self._generator(device))
        fires = u[:, :len(OPS)] < probs
        params = {op: fires[:, i] for i, op in enumerate(OPS)}
        for i, name in enumerate(JITTER_OPS + ('sigma', )):
            low, high = self.ranges[name]
            params[name] = low + (high - low) * u[:, len(OPS) + i]
        keys = torch.rand(n, len(JITTER_OPS), device=device, generator=self._generator(device))
        params['order'] = keys.argsort(dim=1)  # a uniform random permutation per sample
        return params

    def augment(self, img: torch.Tensor, params: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Augment RGB ``img`` ``(N, 3, H, W)`` in [0, 1] with the per-sample ``params`` of :meth:`sample_params`."""

        def per_sample(mask: torch.Tensor) -> torch.Tensor:
            return mask.view(-1, 1, 1, 1)

        zero = torch.zeros_like(params['brightness'])
        for position in range(len(JITTER_OPS)):
            op = torch.where(params['jitter'], params['order'][:, position], -1)  # -1: no jitter for the sample
            # Brightness, contrast and saturation are one blend ``target + factor * (img - target)`` towards 0, the
            # grayscale mean or the grayscale image (torchvision's definitions), so every sample does the one of
            # them that is at this position of its order in one pass; the others and hue get factor 1.
            gray = rgb_to_grayscale(img)
            target = torch.where(per_sample(op == 1), gray.mean((-2, -1), keepdim=True), gray)
            target = torch.where(per_sample(op == 0), 0.0, target)
            factor = zero + 1.0
            for i, name in enumerate(JITTER_OPS[:3]):
                factor = torch.where(op == i, params[name], factor)
            img = (target + per_sample(factor) * (img - target)).clamp_(0.0, 1.0)
            img = torch.where(per_sample(op == 3), shift_hue(img, params['hue']), img)
        gray = rgb_to_grayscale(img, rgb_weights=self.grayscale_weights.to(img.device))
        img = torch.where(per_sample(params['grayscale']), gray.expand_as(img), img)
        kernel = get_gaussian_kernel1d(self.kernel_size, params['sigma'][:, None])
        blurred = filter2d_separable(img, kernel, kernel, border_type='replicate').clamp_(0.0, 1.0)  # float sums
        img = torch.where(per_sample(params['blur']), blurred, img)
        solarized = solarize(img, thresholds=self.solarize_threshold / 255.0)
        return torch.where(per_sample(params['solarize']), solarized, img)

    def forward(self, views: Sequence[torch.Tensor], num_global_views: Optional[int] = None) -> List[torch.Tensor]:
        """Augment the views of a multi-crop batch; ``num_global_views`` defaults to the leading views of the
        first view's size (``PosFieldMultiCrop`` puts its globals first)."""
        if not isinstance(views, (list, tuple)) or not views:
            raise ValueError('MultiCropPhotometric expects a non-empty list of (B, 3, H, W) view batches')
        for i, v in enumerate(views):
            if v.dim() != 4 or v.shape[1] != 3 or v.shape[0] != views[0].shape[0]:
                raise ValueError(f'MultiCropPhotometric: view {i} has shape {tuple(v.shape)}; expected '
                                 f'(B, 3, H, W) with B = {views[0].shape[0]} for every view')
        groups = _consecutive_by_size(views)
        if num_global_views is None:
            num_global_views = groups[0][1] - groups[0][0]
        probs = self.view_probs(len(views), num_global_views, views[0].device)
        batch, out = views[0].shape[0], []
        flip = [2, 1, 0] if self.channel_order == 'bgr' else [0, 1, 2]
        for start, stop in groups:
            img = torch.cat(list(views[start:stop]))[:, flip].float() / 255.0
            group_probs = probs[start:stop, None].expand(-1, batch, -1).reshape(-1, len(OPS))  # view-major
            img = self.augment(img, self.sample_params(group_probs))
            out.extend((img[:, flip] * 255.0).split(batch))
        return out

    def extra_repr(self) -> str:
        return (f'global_recipes={self.global_probs}, local_recipe={self.local_probs}, ranges={self.ranges}, '
                f'channel_order={self.channel_order!r}')


def shift_hue(img: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue of RGB ``img`` ``(N, 3, H, W)`` in [0, 1] by ``turns`` ``(N,)`` of the colour circle.

    The same result as kornia's ``adjust_hue`` (RGB -> HSV -> RGB) in a few fused passes: value (max) and chroma
    (max - min) are kept, and each channel is read off the rotated hue with the closed form of HSV -> RGB,
    ``V - C * clamp(min(k, 4 - k), 0, 1)``, ``k = (n + 6 * hue) mod 6``, ``n = 5, 3, 1`` for R, G, B.
    """
    r, g, b = img.unbind(-3)
    value, _ = img.max(-3)
    chroma = value - img.min(-3)[0]
    safe = torch.where(chroma > 0, chroma, 1.0)
    sector = torch.where(value == r, (g - b) / safe, torch.where(value == g, (b - r) / safe + 2, (r - g) / safe + 4))
    hue6 = torch.remainder(sector + 6 * turns.view(-1, 1, 1), 6.0)  # hue in sixths of a turn
    n = torch.arange(5.0, 0.0, -2.0, device=img.device, dtype=img.dtype).view(1, 3, 1, 1)  # 5, 3, 1
    k = torch.remainder(n + hue6.unsqueeze(-3), 6.0)
    return value.unsqueeze(-3) - chroma.unsqueeze(-3) * torch.minimum(k, 4 - k).clamp(0.0, 1.0)


def _consecutive_by_size(views: Sequence[torch.Tensor]) -> List[Tuple[int, int]]:
    """``(start, stop)`` of each run of consecutive views of one size."""
    groups: List[Tuple[int, int]] = []
    for i, view in enumerate(views):
        if groups and views[groups[-1][0]].shape[-2:] == view.shape[-2:]:
            groups[-1] = (groups[-1][0], i + 1)
        else:
            groups.append((i, i + 1))
    return groups
