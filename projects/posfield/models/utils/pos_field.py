"""The position field: one source of truth for pre-training and detection.

A position field is a learnable (or fixed sin-cos) tensor of shape ``(1, D, Hf, Wf)`` laid over a
*canvas*. Every source image is placed on the canvas (:class:`~projects.posfield.batch.placement.Placement`:
offset ``(ox, oy)`` and side ``s``, all as fractions of the canvas), and every view cut from that image is a
*box* on the canvas: ``(x0, y0, x1, y1)`` in canvas-normalised coordinates (0 = left/top edge, 1 = right/bottom edge).
A view's position embeddings are the field sampled bilinearly at the centres of the view's
patch grid inside its box, mirrored when the view was flipped. Because global and local views of
one image share the placement, they share one coordinate frame.

Convention (tested in tests/test_models/test_pos_field.py): ``grid_sample`` with
``align_corners=False``, so canvas coordinate ``u`` maps to grid coordinate ``2u - 1`` and the
field's texel ``j`` covers ``[j/Wf, (j+1)/Wf)``. Sampling the whole canvas ``(0, 0, 1, 1)`` on a
``Hf x Wf`` patch grid therefore returns the field itself, exactly.

This module imports only torch, numpy and the placement, so the mmdet-side backbone can reuse it.
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...batch.placement import Placement


def view_grid(boxes: torch.Tensor, grid_hw: Tuple[int, int],
              flips: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Sampling grid for ``F.grid_sample`` at the patch centres of each view's box.

    Args:
        boxes: ``(B, 4)`` canvas-normalised ``(x0, y0, x1, y1)``.
        grid_hw: the view's patch grid ``(h, w)``.
        flips: ``(B,)`` bool; a flipped view's patch ``j`` sits at the mirrored position.

    Returns:
        ``(B, h, w, 2)`` grid in ``[-1, 1]`` coordinates (x first), float32.
    """
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f'boxes must have shape (B, 4), got {tuple(boxes.shape)}')
    h, w = grid_hw
    boxes = boxes.float()
    dev = boxes.device
    tx = (torch.arange(w, device=dev, dtype=torch.float32) + 0.5) / w  # (w,)
    ty = (torch.arange(h, device=dev, dtype=torch.float32) + 0.5) / h  # (h,)
    tx = tx.unsqueeze(0).expand(boxes.shape[0], w)
    if flips is not None:
        flips = flips.to(dev).bool().view(-1, 1)
        tx = torch.where(flips, 1.0 - tx, tx)
    x0, y0, x1, y1 = boxes.unbind(-1)
    xs = x0[:, None] + (x1 - x0)[:, None] * tx  # (B, w)
    ys = y0[:, None] + (y1 - y0)[:, None] * ty[None]  # (B, h)
    gx = (2 * xs - 1)[:, None, :].expand(-1, h, w)
    gy = (2 * ys - 1)[:, :, None].expand(-1, h, w)
    return torch.stack([gx, gy], dim=-1)


def sample_field(field: torch.Tensor, boxes: torch.Tensor, grid_hw: Tuple[int, int],
                 flips: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Sample a ``(1|B, D, Hf, Wf)`` field on each view's patch grid.

    Returns ``(B, h * w, D)`` in the field's dtype. Interpolation runs in fp32 (fp16 grid
    coordinates are too coarse for a 50-cell field), with border padding so boxes that touch the
    canvas edge do not fade towards zero.
    """
    grid = view_grid(boxes, grid_hw, flips)
    f = field.float()
    views, (h, w) = grid.shape[0], grid_hw
    if f.shape[0] == 1 and views != 1:
        # One field for all views: sample all views' points as one (1, B * h, w) grid. Same values as
        # expanding the field to B, but the backward accumulates into the one field directly instead of
        # building a (B, D, Hf, Wf) gradient and summing it.
        out = F.grid_sample(f, grid.reshape(1, views * h, w, 2), mode='bilinear', padding_mode='border',
                            align_corners=False)  # (1, D, B * h, w)
        return out.reshape(f.shape[1], views, h * w).permute(1, 2, 0).to(field.dtype)
    out = F.grid_sample(f, grid, mode='bilinear', padding_mode='border', align_corners=False)
    return out.flatten(2).transpose(1, 2).to(field.dtype)


def sincos_field(embed_dims: int, field_hw: Tuple[int, int], temperature: float = 10000.) -> torch.Tensor:
    """Fixed 2-D sin-cos field ``(1, D, Hf, Wf)`` (MAE/MoCoV3 layout, evaluated at texel centres)."""
    if embed_dims % 4 != 0:
        raise ValueError(f'sin-cos field needs embed_dims divisible by 4, got {embed_dims}')
    h, w = field_hw
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing='ij')
    quarter = embed_dims // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    ox = xs.flatten()[:, None] * omega[None]
    oy = ys.flatten()[:, None] * omega[None]
    emb = torch.cat([ox.sin(), ox.cos(), oy.sin(), oy.cos()], dim=1)  # (h*w, D)
    return emb.t().reshape(1, embed_dims, h, w)


class PositionField(nn.Module):
    """A position field over the canvas, sampled for any view box and patch grid.

    Args:
        embed_dims: channels ``D``.
        field_size: ``(Hf, Wf)``; default 50 x 50 (paper), 19 x 19 is its ablation.
        mode: ``'learnable'`` (trunc-normal std ``init_std``) or ``'sincos'`` (fixed buffer).
    """

    def __init__(self, embed_dims: int, field_size: Union[int, Tuple[int, int]] = (50, 50),
                 mode: str = 'learnable', init_std: float = 0.02):
        super().__init__()
        if isinstance(field_size, int):
            field_size = (field_size, field_size)
        if mode not in ('learnable', 'sincos'):
            raise ValueError(f"PositionField mode must be 'learnable' or 'sincos', got {mode!r}")
        self.embed_dims = embed_dims
        self.field_size = tuple(field_size)
        self.mode = mode
        if mode == 'learnable':
            self.field = nn.Parameter(torch.zeros(1, embed_dims, *self.field_size))
            nn.init.trunc_normal_(self.field, std=init_std)
        else:
            self.register_buffer('field', sincos_field(embed_dims, self.field_size), persistent=True)

    def forward(self, boxes: torch.Tensor, grid_hw: Tuple[int, int],
                flips: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``(B, h*w, D)`` embeddings for views with canvas ``boxes`` (``(B, 4)``)."""
        return sample_field(self.field, boxes, grid_hw, flips)

    def for_whole_image(self, batch: int, grid_hw: Tuple[int, int],
                        placement: Optional[Placement] = None) -> torch.Tensor:
        """Embeddings for un-cropped inputs (detection): the image covers ``placement``'s window,
        the whole canvas by default."""
        p = placement or Placement(0.0, 0.0, 1.0)
        box = torch.tensor([[p.ox, p.oy, p.ox + p.s, p.oy + p.s]], device=self.field.device)
        return self.forward(box, grid_hw).expand(batch, -1, -1)

    def extra_repr(self) -> str:
        return f'embed_dims={self.embed_dims}, field_size={self.field_size}, mode={self.mode!r}'


POS_EMBED_TYPES = ('field', 'interpolate')


def resize_grid_embedding(pos_embed: torch.Tensor, src_hw: Tuple[int, int], dst_hw: Tuple[int, int],
                          mode: str = 'bicubic', offset: float = 0.0) -> torch.Tensor:
    """A learned patch position grid ``(1, Hs * Ws, D)`` resized to ``(1, Hd * Wd, D)`` (mmpretrain's
    ``resize_pos_embed`` without the extra tokens; interpolation in fp32, unchanged when the sizes agree).

    ``offset`` > 0: DINOv2's ``interpolate_offset`` (``interpolate_pos_encoding``): the scale factor is
    ``(Hd + offset) / Hs`` instead of the output size, which shifts where the output samples the input."""
    if tuple(src_hw) == tuple(dst_hw):
        return pos_embed
    if pos_embed.shape[1] != src_hw[0] * src_hw[1]:
        raise ValueError(f'pos_embed has {pos_embed.shape[1]} positions, not the {src_hw[0]} x {src_hw[1]} grid')
    grid = pos_embed.float().reshape(1, src_hw[0], src_hw[1], -1).permute(0, 3, 1, 2)
    if offset:
        scale = ((dst_hw[0] + offset) / src_hw[0], (dst_hw[1] + offset) / src_hw[1])
        grid = F.interpolate(grid, scale_factor=scale, mode=mode, align_corners=False)
        if tuple(grid.shape[-2:]) != tuple(dst_hw):
            raise ValueError(f'interpolate offset {offset} gives a {tuple(grid.shape[-2:])} grid, not {tuple(dst_hw)}')
    else:
        grid = F.interpolate(grid, size=tuple(dst_hw), mode=mode, align_corners=False)
    return grid.flatten(2).transpose(1, 2).to(pos_embed.dtype)


def patch_positions(pos_embed_type: str, grid_hw: Tuple[int, int], batch: int, *,
                    pos_field: Optional[PositionField] = None, boxes: Optional[torch.Tensor] = None,
                    flips: Optional[torch.Tensor] = None, placement: Optional[Placement] = None,
                    pos_embed: Optional[torch.Tensor] = None, pos_embed_hw: Optional[Tuple[int, int]] = None,
                    interpolate_mode: str = 'bicubic', interpolate_offset: float = 0.1) -> torch.Tensor:
    """Position embeddings of a view's patch grid: the one implementation behind pre-training, detection and
    the DINOv2-dagger baseline. The parameters stay attributes of the backbone that owns them (their names are
    the checkpoint keys the detector and the converter rely on, docs/design.md contract 3).

    * ``'field'``: ``pos_field`` sampled at the patch centres of each view's canvas box (``boxes`` ``(B, 4)``,
      mirrored where ``flips``), or, without boxes, over the un-cropped image's window (``placement``; the
      whole canvas by default): ``(B, h * w, D)``.
    * ``'interpolate'``: the learned grid ``pos_embed`` ``(1, Hg * Wg, D)`` on ``pos_embed_hw`` resized to
      ``grid_hw``: ``(1, h * w, D)``, bicubic with DINOv2's ``interpolate_offset`` 0.1 by default; boxes are
      ignored (the baseline has no canvas).
    """
    if pos_embed_type == 'interpolate':
        if pos_embed is None or pos_embed_hw is None:
            raise ValueError("pos_embed_type='interpolate' needs pos_embed and pos_embed_hw")
        return resize_grid_embedding(pos_embed, pos_embed_hw, grid_hw, interpolate_mode, interpolate_offset)
    if pos_embed_type != 'field':
        raise ValueError(f'pos_embed_type must be one of {POS_EMBED_TYPES}, got {pos_embed_type!r}')
    if pos_field is None:
        raise ValueError("pos_embed_type='field' needs a PositionField")
    if boxes is None:
        return pos_field.for_whole_image(batch, grid_hw, placement)
    if boxes.shape != (batch, 4):
        raise ValueError(f'boxes must have shape ({batch}, 4), got {tuple(boxes.shape)}')
    return pos_field(boxes, grid_hw, flips)
