"""A classify-and-localise set in the exact Pascal VOC layout, one labelled object per image, built offline.

Two kinds of images (``docs/localization.md`` names them beside every number):

* ``tree``: **real** aerial photographs with **real** boxes: crops of DeepForest's NEON tiles (PyPI
  ``deepforest`` wheel, Pascal VOC XML) around one annotated tree. A crop is kept only if no other annotated
  tree has more than ``max_neighbour_cover`` of its box inside it, so the single label is honest (slivers of
  neighbouring crowns may show at the edges). The tree fills ``tree_fill`` of the crop's side and sits at a
  random position in it. Trainval and test come from different NEON tiles (different places).
* the shape classes of :mod:`.shapes`: a **synthetic composition**, one generated shape (textured with real
  photo patches or colours) pasted onto a crop of a real photo from the demo pool (:func:`.compose_image`
  with one object). Trainval backgrounds and textures come from the train background groups of the demo
  data, test ones from its val groups, which the unlabelled pre-training pool leaves out.

Layout (what ``VOCLocalizationDataset`` and mmdet's ``VOCDataset`` read unchanged)::

    <out>/JPEGImages/<id>.jpg  <out>/Annotations/<id>.xml  <out>/ImageSets/Main/{trainval,test}.txt
    <out>/manifest.json  (arguments, counts, per-image origin)

Boxes are written as VOC's 1-based inclusive integer pixels.
"""
import json
import os
import os.path as osp
import shutil
from typing import Dict, List, Optional, Sequence, Tuple
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image

from .coco_masks import tight_box
from .compose_coco import _PhotoCache, compose_image
from .manifest import read_manifest, write_manifest
from .shapes import CLASSES as SHAPE_CLASSES
from .sources import DemoDataError, Downloader, Source, iter_source_files

VOC_LOC_VERSION = 1  # bump when the recipe changes what is written
TREE = 'tree'

DEEPFOREST = Source(
    name='deepforest_voc', package='deepforest', version='2.1.0', download_mb=20.6,
    members=('deepforest/data/2019_YELL_2_528000_4978000_image_crop2.*', 'deepforest/data/OSBS_029.*',
             'deepforest/data/2019_YELL_2_541000_4977000_image_crop.*'),
    licence='MIT (deepforest package); NEON airborne imagery (open data)')
# NEON tile -> split: the test tile is another place than the trainval tiles
TREE_TILES = (('2019_YELL_2_528000_4978000_image_crop2', 'trainval'), ('OSBS_029', 'trainval'),
              ('2019_YELL_2_541000_4977000_image_crop', 'test'))


def voc_xml_text(filename: str, width: int, height: int, name: str, box: Sequence[int], source: str) -> str:
    """One-object Pascal VOC annotation; ``box`` is VOC's 1-based inclusive ``(xmin, ymin, xmax, ymax)``."""
    x0, y0, x1, y1 = (int(v) for v in box)
    return (f'<annotation>\n  <folder>VOC_LOC</folder>\n  <filename>{escape(filename)}</filename>\n'
            f'  <source><database>{escape(source)}</database></source>\n'
            f'  <size><width>{width}</width><height>{height}</height><depth>3</depth></size>\n'
            f'  <segmented>0</segmented>\n  <object>\n    <name>{escape(name)}</name>\n'
            '    <pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>\n'
            f'    <bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox>\n'
            '  </object>\n</annotation>\n')


def continuous_to_voc(box: Sequence[float], width: int, height: int) -> Tuple[int, int, int, int]:
    """Continuous ``[x0, x1) x [y0, y1)`` pixels -> VOC 1-based inclusive integers (covering pixels)."""
    x0, y0, x1, y1 = box
    xmin = int(np.clip(np.floor(x0 + 1e-6), 0, width - 1)) + 1
    ymin = int(np.clip(np.floor(y0 + 1e-6), 0, height - 1)) + 1
    xmax = int(np.clip(np.ceil(x1 - 1e-6), xmin, width))
    ymax = int(np.clip(np.ceil(y1 - 1e-6), ymin, height))
    return xmin, ymin, xmax, ymax


def read_tree_boxes(xml_text: str, where: str) -> np.ndarray:
    """``(N, 4)`` continuous xyxy boxes of a DeepForest VOC file (its 1-based inclusive coordinates)."""
    import xml.etree.ElementTree as ET
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as e:
        raise DemoDataError(f'{where}: not valid XML ({e})') from e
    boxes = []
    for obj in root.iter('object'):
        try:
            b = [float(obj.find(f'bndbox/{k}').text) for k in ('xmin', 'ymin', 'xmax', 'ymax')]
        except (AttributeError, TypeError, ValueError) as e:
            raise DemoDataError(f'{where}: an <object> without a numeric <bndbox> ({e})') from e
        boxes.append([b[0] - 1, b[1] - 1, b[2], b[3]])
    if not boxes:
        raise DemoDataError(f'{where}: no <object> box')
    return np.array(boxes, np.float64)


def isolated_tree_crops(boxes: np.ndarray, width: int, height: int, rng: np.random.Generator,
                        tree_fill: Tuple[float, float] = (0.45, 0.7), max_neighbour_cover: float = 0.25,
                        tries: int = 8) -> List[Tuple[int, np.ndarray]]:
    """For each tree box, a square crop ``(x0, y0, x1, y1)`` in which it is the only annotated tree, if any.

    The crop side is ``max(box w, h) / U(tree_fill)``; the box is placed at a uniformly random position
    inside it. A crop is valid when it lies inside the image and every *other* box has at most
    ``max_neighbour_cover`` of its area inside the crop. Returns ``[(box index, crop), ...]``.
    """
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    area = np.maximum(w * h, 1e-6)
    out = []
    for i, b in enumerate(boxes):
        for _ in range(tries):
            side = max(w[i], h[i]) / rng.uniform(*tree_fill)
            x0 = b[0] - rng.uniform(0, side - w[i])
            y0 = b[1] - rng.uniform(0, side - h[i])
            crop = np.array([x0, y0, x0 + side, y0 + side])
            if crop[0] < 0 or crop[1] < 0 or crop[2] > width or crop[3] > height:
                continue
            iw = np.clip(np.minimum(boxes[:, 2], crop[2]) - np.maximum(boxes[:, 0], crop[0]), 0, None)
            ih = np.clip(np.minimum(boxes[:, 3], crop[3]) - np.maximum(boxes[:, 1], crop[1]), 0, None)
            cover = iw * ih / area
            cover[i] = 0.0
            if cover.max() <= max_neighbour_cover:
                out.append((i, crop))
                break
    return out


def _load_deepforest(cache_dir: str, downloader: Optional[Downloader], use_installed: bool) -> Dict[str, Dict]:
    files = {osp.basename(m): (data, origin) for m, data, origin in
             iter_source_files(DEEPFOREST, cache_dir, downloader, use_installed)}
    tiles = {}
    for stem, split in TREE_TILES:
        if f'{stem}.xml' not in files or f'{stem}.png' not in files:
            raise DemoDataError(f'{DEEPFOREST.requirement}: {stem}.xml / {stem}.png not found in the package')
        import io
        img = Image.open(io.BytesIO(files[f'{stem}.png'][0])).convert('RGB')
        boxes = read_tree_boxes(files[f'{stem}.xml'][0].decode(), f'{DEEPFOREST.requirement}:{stem}.xml')
        tiles[stem] = dict(img=img, boxes=boxes, split=split, origin=files[f'{stem}.xml'][1])
    return tiles


def _args(per_class_train, per_class_test, image_size, seed, tree_fill, max_neighbour_cover, shape_scale,
          demo_args) -> Dict:
    return dict(version=VOC_LOC_VERSION, per_class_train=per_class_train, per_class_test=per_class_test,
                image_size=image_size, seed=seed, tree_fill=list(tree_fill),
                max_neighbour_cover=max_neighbour_cover, shape_scale=list(shape_scale),
                deepforest=DEEPFOREST.requirement, demo_pool=demo_args)



def voc_loc_is_complete(out_dir: str, manifest: Optional[Dict] = None) -> bool:
    m = manifest if manifest is not None else read_manifest(out_dir)
    if m is None:
        return False
    for split, ids in m['splits'].items():
        path = osp.join(out_dir, 'ImageSets', 'Main', f'{split}.txt')
        if not osp.isfile(path):
            return False
        for img_id in ids:
            if not (osp.isfile(osp.join(out_dir, 'JPEGImages', img_id + '.jpg'))
                    and osp.isfile(osp.join(out_dir, 'Annotations', img_id + '.xml'))):
                return False
    return True


def build_voc_loc(out_dir: str, demo_root: str, per_class_train: int = 60, per_class_test: int = 25,
                  image_size: int = 128, seed: int = 0, tree_fill: Tuple[float, float] = (0.45, 0.7),
                  max_neighbour_cover: float = 0.25, shape_scale: Tuple[float, float] = (0.15, 0.4),
                  cache_dir: Optional[str] = None, downloader: Optional[Downloader] = None,
                  use_installed: bool = True, force: bool = False, log=print) -> Dict:
    """Build (or reuse) the VOC-layout set in ``out_dir`` from the demo data in ``demo_root``; return the manifest.

    ``demo_root`` is a folder built by ``tools/data/prepare_demo_data.py`` (its ``photos/``, the photo manifest
    and the train/val background groups are used). Classes: ``tree`` then the shape classes.
    """
    if per_class_train < 1 or per_class_test < 1:
        raise DemoDataError(f'per_class_train and per_class_test must be >= 1, got {per_class_train}, '
                            f'{per_class_test}')
    if image_size < 32:
        raise DemoDataError(f'image_size must be >= 32 px, got {image_size}')
    if not 0 < tree_fill[0] <= tree_fill[1] <= 1:
        raise DemoDataError(f'tree_fill must be (lo, hi) with 0 < lo <= hi <= 1, got {tree_fill}')
    demo_manifest_path = osp.join(demo_root, 'manifest.json')
    photo_manifest_path = osp.join(demo_root, 'photos', 'manifest.json')
    for path in (demo_manifest_path, photo_manifest_path):
        if not osp.isfile(path):
            raise DemoDataError(f'{path} not found: build the demo data first '
                                f'(python tools/data/prepare_demo_data.py --data-root {demo_root})')
    with open(demo_manifest_path) as f:
        demo = json.load(f)
    with open(photo_manifest_path) as f:
        photos = json.load(f)['images']
    args = _args(per_class_train, per_class_test, image_size, seed, tree_fill, max_neighbour_cover, shape_scale,
                 demo['args']['pool'])
    old = read_manifest(out_dir)
    if not force and old is not None and old.get('args') == args and voc_loc_is_complete(out_dir, old):
        log(f'[voc-loc] {out_dir} is up to date (manifest matches the arguments); use --force to rebuild')
        return old
    if osp.isdir(out_dir):
        shutil.rmtree(out_dir)
    for sub in ('JPEGImages', 'Annotations', 'ImageSets/Main'):
        os.makedirs(osp.join(out_dir, sub))

    classes = (TREE, ) + tuple(SHAPE_CLASSES)
    records: List[Dict] = []
    splits: Dict[str, List[str]] = {'trainval': [], 'test': []}
    wanted = {'trainval': per_class_train, 'test': per_class_test}

    def write(img: np.ndarray, split: str, name: str, box_voc, origin: Dict):
        img_id = f'{split}_{name}_{sum(r["class"] == name and r["split"] == split for r in records):04d}'
        Image.fromarray(img).save(osp.join(out_dir, 'JPEGImages', img_id + '.jpg'), quality=92)
        h, w = img.shape[:2]
        db = 'DeepForest NEON (real photo, real box)' if name == TREE else 'synthetic composition on a real photo'
        with open(osp.join(out_dir, 'Annotations', img_id + '.xml'), 'w') as f:
            f.write(voc_xml_text(img_id + '.jpg', w, h, name, box_voc, db))
        splits[split].append(img_id)
        records.append(dict(id=img_id, split=split, **{'class': name}, box=list(box_voc),
                            kind='real' if name == TREE else 'synthetic', **origin))

    # 1. real trees
    tiles = _load_deepforest(cache_dir or osp.join(demo_root, 'downloads'), downloader, use_installed)
    for split in ('trainval', 'test'):
        candidates = []
        for stem, tile in tiles.items():
            if tile['split'] != split:
                continue
            rng = np.random.default_rng([seed, len(stem), sum(map(ord, stem))])
            W, H = tile['img'].size
            for i, crop in isolated_tree_crops(tile['boxes'], W, H, rng, tree_fill, max_neighbour_cover):
                candidates.append((stem, i, crop))
        if len(candidates) < wanted[split]:
            raise DemoDataError(f'only {len(candidates)} isolated trees for {split} (need {wanted[split]}); lower '
                                f'per_class_{"train" if split == "trainval" else "test"} or raise max_neighbour_cover')
        order = np.random.default_rng([seed, 11, len(split)]).permutation(len(candidates))[:wanted[split]]
        for k in sorted(order):
            stem, i, crop = candidates[k]
            tile = tiles[stem]
            scale = image_size / (crop[2] - crop[0])
            img = np.asarray(tile['img'].resize((image_size, image_size), Image.BICUBIC, box=tuple(crop)))
            b = tile['boxes'][i]
            box = [(b[0] - crop[0]) * scale, (b[1] - crop[1]) * scale, (b[2] - crop[0]) * scale,
                   (b[3] - crop[1]) * scale]
            write(img, split, TREE, continuous_to_voc(box, image_size, image_size),
                  dict(origin=f'{DEEPFOREST.requirement}:deepforest/data/{stem}.png', tree_index=int(i),
                       crop=[round(float(v), 2) for v in crop]))

    # 2. composed shapes on real photo crops; backgrounds/textures split by the demo data's background groups
    val_groups = set(demo['backgrounds']['val_groups'])
    whole = [r for r in photos if r['kind'] == 'photo']
    pools = {'trainval': [r for r in whole if r['group'] not in val_groups],
             'test': [r for r in whole if r['group'] in val_groups]}
    cache = _PhotoCache()
    photo_dir = osp.join(demo_root, 'photos')
    for split in ('trainval', 'test'):
        pool = sorted(osp.join(photo_dir, r['file']) for r in pools[split])
        if not pool:
            raise DemoDataError(f'no background photo for {split} in {photo_manifest_path}')
        for ci, name in enumerate(SHAPE_CLASSES):
            for n in range(wanted[split]):
                rng = np.random.default_rng([seed, 23, len(split), ci, n])
                bg = pool[int(rng.integers(len(pool)))]
                others = [p for p in pool if p != bg] or pool

                def texture(r, others=others):
                    return cache(others[int(r.integers(len(others)))])

                objects = []
                for _ in range(20):  # a shape must land (rarely it is rejected for being too clipped)
                    img, objects, bg_crop = compose_image(cache(bg), rng, image_size, (name, ), texture,
                                                          objects_per_image=(1, 1), scale_range=shape_scale)
                    if objects:
                        break
                if not objects:
                    raise DemoDataError(f'could not place a {name} on {bg}')
                x, y, w, h = tight_box(objects[0][1])
                write(img, split, name, (x + 1, y + 1, x + w, y + h),
                      dict(origin=osp.relpath(bg, demo_root), background_crop=bg_crop))

    for split, ids in splits.items():
        with open(osp.join(out_dir, 'ImageSets', 'Main', f'{split}.txt'), 'w') as f:
            f.write('\n'.join(ids) + '\n')
    counts = {s: {c: sum(r['class'] == c and r['split'] == s for r in records) for c in classes} for s in splits}
    manifest = dict(args=args, classes=list(classes), counts=counts, splits=splits,
                    note=f'{TREE}: real NEON aerial photos with real DeepForest boxes; '
                         f'{", ".join(SHAPE_CLASSES)}: synthetic composition (generated shapes on real photos)',
                    images=records)
    write_manifest(out_dir, manifest)
    log(f'[voc-loc] {out_dir}: ' + ', '.join(f'{s} {len(ids)} images' for s, ids in splits.items())
        + f'; classes {list(classes)} ({TREE}: real; others: synthetic composition)')
    return manifest
