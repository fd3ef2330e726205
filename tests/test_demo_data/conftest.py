"""Generated backgrounds and fake wheels for the demo-data tests (no network, no real packages)."""
import io
import zipfile

import cv2
import numpy as np
import pytest
from PIL import Image


def blocky_rgb(h, w, seed):
    """A blocky random RGB image (real photos are not needed to test composition)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3))
    return np.kron(base, np.ones((16, 16, 1)))[:h, :w].astype(np.uint8)


@pytest.fixture
def blocky():
    return blocky_rgb


@pytest.fixture
def backgrounds(tmp_path):
    folder = tmp_path / 'bg'
    folder.mkdir()
    paths = []
    for i in range(5):
        p = folder / f'bg_{i}.jpg'
        Image.fromarray(blocky_rgb(120 + 10 * i, 150, i)).save(p, quality=90)
        paths.append(str(p))
    return paths


def _png_bytes(arr, mode=None):
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, format='PNG')
    return buf.getvalue()


def _jpg_bytes(arr):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format='JPEG', quality=90)
    return buf.getvalue()


def _avi_bytes(tmp_path, n_frames=7):
    path = str(tmp_path / 'clip.avi')
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'MJPG'), 10, (160, 120))
    assert writer.isOpened(), 'OpenCV cannot write MJPG AVI here'
    for i in range(n_frames):
        writer.write(blocky_rgb(120, 160, 100 + i))
    writer.release()
    with open(path, 'rb') as f:
        return f.read()


@pytest.fixture
def fake_wheel_factory(tmp_path):
    """``make(name, files={member: bytes}) -> wheel path``."""
    def make(name, files):
        path = tmp_path / 'wheels' / name
        path.parent.mkdir(exist_ok=True)
        with zipfile.ZipFile(path, 'w') as zf:
            for member, data in files.items():
                zf.writestr(member, data)
        return str(path)
    return make


@pytest.fixture
def fake_photo_files(tmp_path):
    """Members of a fake data wheel: an RGB JPEG, an RGBA PNG, a 16-bit PNG, a large photo (tiles), a tiny
    icon (skipped), a video, plus files that are not selected."""
    rgba = np.dstack([blocky_rgb(100, 140, 2), np.full((100, 140), 255, np.uint8)])
    deep = (np.linspace(0, 65535, 90 * 130).reshape(90, 130)).astype(np.uint16)
    return {
        'fakepkg/data/scene_a.jpg': _jpg_bytes(blocky_rgb(96, 128, 1)),
        'fakepkg/data/scene_b-l.png': _png_bytes(rgba, 'RGBA'),
        'fakepkg/data/scene_b-r.png': _png_bytes(blocky_rgb(100, 140, 3)),
        'fakepkg/data/deep16.png': _png_bytes(deep),
        'fakepkg/data/big.jpg': _jpg_bytes(blocky_rgb(200, 260, 4)),
        'fakepkg/data/icon.png': _png_bytes(blocky_rgb(20, 20, 5)),
        'fakepkg/data/clip.avi': _avi_bytes(tmp_path),
        'fakepkg/data/readme.txt': b'not an image',
        'fakepkg/__init__.py': b'',
    }
