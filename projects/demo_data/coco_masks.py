"""Binary mask <-> COCO polygon helpers.

:func:`mask_to_polygons` traces the outer contour of every connected part (OpenCV, 8-connected) through
the pixel centres and grows it by half a pixel with mitred joins, so the polygon runs along the pixel
edges; pycocotools (COCO convention: pixel ``j`` spans ``[j, j + 1)``) then rasterises it back to the
same pixels for any hole-free mask. Holes cannot be represented by COCO polygons (they are merged by
union), which is why the composer rejects object placements that would punch a hole into another
object's visible mask (:func:`has_hole`).
"""
from typing import List, Optional, Tuple

import cv2
import numpy as np
from shapely.geometry import LineString, MultiPolygon, Point, Polygon
from shapely.ops import unary_union


def tight_box(mask: np.ndarray) -> Optional[Tuple[int, int, int, int]]:
    """``(x, y, w, h)`` of the smallest pixel-aligned box holding every set pixel, or ``None`` if empty."""
    ys = np.flatnonzero(mask.any(1))
    xs = np.flatnonzero(mask.any(0))
    if ys.size == 0:
        return None
    return int(xs[0]), int(ys[0]), int(xs[-1] - xs[0] + 1), int(ys[-1] - ys[0] + 1)


def has_hole(mask: np.ndarray) -> bool:
    """True if some background region is enclosed by the (8-connected) foreground."""
    m = np.ascontiguousarray(mask, dtype=np.uint8)
    if not m.any():
        return False
    _, hierarchy = cv2.findContours(m, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    return hierarchy is not None and bool((hierarchy[0][:, 3] >= 0).any())


def _part_geometry(pts: np.ndarray):
    """Area covered by the pixels whose centres are the contour ``pts`` (N, 2): contour region + 0.5 px."""
    pts = pts.astype(np.float64) + 0.5  # pixel index -> pixel centre
    if len(pts) == 1:
        geom = Point(pts[0])
    elif len(pts) == 2:
        geom = LineString(pts)
    else:
        # the ring union its own boundary line: degenerate (one-pixel-wide) parts keep their area
        geom = unary_union([Polygon(pts).buffer(0), LineString(np.vstack([pts, pts[:1]]))])
    return geom.buffer(0.5, join_style=2, cap_style=3, mitre_limit=2.0)


def mask_to_polygons(mask: np.ndarray, offset: Tuple[float, float] = (0.0, 0.0), ndigits: int = 2) -> List[List[float]]:
    """COCO ``segmentation`` polygons (list of flat ``[x1, y1, x2, y2, ...]``) of a binary mask.

    ``offset`` ``(dx, dy)`` is added to every coordinate (to trace a crop of a larger image).
    """
    m = np.ascontiguousarray(mask, dtype=np.uint8)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    polys = []
    for c in contours:
        geom = _part_geometry(c[:, 0, :])
        parts = geom.geoms if isinstance(geom, MultiPolygon) else [geom]
        for part in parts:
            if not isinstance(part, Polygon) or part.is_empty:
                continue
            part = part.simplify(0.0)  # drops collinear vertices only; the outline is unchanged
            xy = np.asarray(part.exterior.coords)[:-1] + offset
            if len(xy) >= 3:
                polys.append([round(float(v), ndigits) for v in xy.ravel()])
    return polys


def polygons_to_mask(polys: List[List[float]], height: int, width: int) -> np.ndarray:
    """Rasterise COCO polygons exactly as pycocotools (and so mmdet / COCOeval) does."""
    from pycocotools import mask as mask_utils
    if not polys:
        return np.zeros((height, width), np.uint8)
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polys, height, width)))


def roundtrip_iou(polys: List[List[float]], mask: np.ndarray) -> float:
    """IoU between the pycocotools rasterisation of ``polys`` and the binary ``mask`` they were traced from."""
    m = polygons_to_mask(polys, *mask.shape).astype(bool)
    mask = mask.astype(bool)
    union = (m | mask).sum()
    return float((m & mask).sum() / union) if union else 1.0
