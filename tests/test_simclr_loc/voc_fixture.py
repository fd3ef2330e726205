"""A small VOC-format folder written by the tests: JPEGImages/, Annotations/*.xml, ImageSets/Main/*.txt."""
from __future__ import annotations

import os.path as osp
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
from PIL import Image

# (name, colour) of the classes drawn; all are VOC class names
DRAWN = (('cat', (220, 40, 40)), ('dog', (40, 200, 40)), ('car', (40, 60, 220)))


def voc_xml(filename: str, width: int, height: int, objects: Sequence[Dict]) -> str:
    """VOC annotation text; each object: dict(name, box=(xmin, ymin, xmax, ymax), difficult=0)."""
    parts = [f'<annotation><folder>VOC</folder><filename>{filename}</filename>',
             f'<size><width>{width}</width><height>{height}</height><depth>3</depth></size>']
    for o in objects:
        x0, y0, x1, y1 = o['box']
        parts.append(f'<object><name>{o["name"]}</name><pose>Unspecified</pose><truncated>0</truncated>'
                     f'<difficult>{o.get("difficult", 0)}</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>'
                     f'<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>')
    parts.append('</annotation>')
    return ''.join(parts)


def write_voc(root: Path, n: int = 12, seed: int = 0, splits: Optional[Dict[str, Sequence[int]]] = None,
              size=(96, 80)) -> List[Dict]:
    """Write ``n`` images, each with a big coloured rectangle (the target) and sometimes a small second
    object or a difficult one. Returns per image ``dict(img_id, label_name, box)`` of the expected target
    (VOC 1-based box). ``splits`` maps split name -> image indices (default: train = all but 4, val = last 4).
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    for sub in ('JPEGImages', 'Annotations', 'ImageSets/Main'):
        (root / sub).mkdir(parents=True, exist_ok=True)
    w, h = size
    records = []
    for i in range(n):
        img_id = f'{2000 + i:06d}'
        name, colour = DRAWN[i % len(DRAWN)]
        img = (rng.random((h, w, 3)) * 60 + 80).astype(np.uint8)  # grey noise background
        bw, bh = int(rng.integers(w // 3, w - 10)), int(rng.integers(h // 3, h - 10))
        x0, y0 = int(rng.integers(1, w - bw)), int(rng.integers(1, h - bh))
        box = (x0, y0, x0 + bw - 1, y0 + bh - 1)  # VOC: 1-based inclusive
        img[y0 - 1:y0 - 1 + bh, x0 - 1:x0 - 1 + bw] = colour
        objects = [dict(name=name, box=box)]
        if i % 3 == 1:  # a smaller second object: the target stays the big one
            other = DRAWN[(i + 1) % len(DRAWN)][0]
            objects.append(dict(name=other, box=(1, 1, 8, 8)))
        if i % 4 == 2:  # a huge difficult object must not become the target
            objects.append(dict(name='person', box=(1, 1, w, h), difficult=1))
        Image.fromarray(img).save(root / 'JPEGImages' / f'{img_id}.jpg', quality=92)
        (root / 'Annotations' / f'{img_id}.xml').write_text(voc_xml(f'{img_id}.jpg', w, h, objects))
        records.append(dict(img_id=img_id, label_name=name, box=box))
    if splits is None:
        splits = dict(train=range(0, n - 4), val=range(n - 4, n), trainval=range(n))
    for split, idx in splits.items():
        (root / 'ImageSets' / 'Main' / f'{split}.txt').write_text(
            ''.join(records[i]['img_id'] + '\n' for i in idx))
    return records


def voc_dir_exists(root) -> bool:
    return osp.isdir(osp.join(root, 'ImageSets', 'Main'))
