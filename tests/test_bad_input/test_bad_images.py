"""Bad images in an unlabelled pool: huge, tiny, truncated, not images, missing; symlink loops."""
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from projects.common.transforms import LoadRGBImage, UnreadableImageError
from tests.helpers import TINY_PRETRAIN, write_images
from tests.test_bad_input.helpers import LogCapture, png_header, run_tool


@pytest.fixture
def bomb(tmp_path):
    path = tmp_path / 'scan_20000x10000.png'
    path.write_bytes(png_header(20000, 10000))
    return path


def test_huge_image_is_skipped_with_a_warning_naming_it(bomb, caplog):
    log = LogCapture(caplog)
    assert LoadRGBImage(on_error='skip')(dict(img_path=str(bomb))) is None
    [msg] = log.warnings
    assert str(bomb) in msg and '20000x10000' in msg and 'max_pixels=89478485' in msg and 'skipped' in msg


def test_huge_image_raises_naming_it_with_on_error_raise(bomb):
    with pytest.raises(UnreadableImageError, match=r'scan_20000x10000\.png: 20000x10000 = 200000000 pixels is '
                                                   r'more than max_pixels'):
        LoadRGBImage(on_error='raise')(dict(img_path=str(bomb)))
    assert Image.MAX_IMAGE_PIXELS == 89478485  # PIL's global limit is left as it was


def test_pixel_limit_is_configurable(tmp_path):
    Image.fromarray(np.full((40, 50, 3), 7, np.uint8)).save(tmp_path / 'ok.png')
    with pytest.raises(UnreadableImageError, match=r'ok\.png: 50x40 = 2000 pixels is more than max_pixels=1999'):
        LoadRGBImage(max_pixels=1999)(dict(img_path=str(tmp_path / 'ok.png')))
    assert LoadRGBImage(max_pixels=2000)(dict(img_path=str(tmp_path / 'ok.png')))['img'].shape == (40, 50, 3)


def test_limit_above_pils_own_is_used_instead_of_pils(bomb):
    # PIL alone raises DecompressionBombError (not an OSError) for this header; with a higher max_pixels the file
    # is opened and fails as what it is: a truncated image, named.
    with pytest.raises(Image.DecompressionBombError):
        Image.open(bomb)
    with pytest.raises(UnreadableImageError, match=r'scan_20000x10000\.png: unreadable'):
        LoadRGBImage(max_pixels=10 ** 9)(dict(img_path=str(bomb)))


def test_one_pixel_image_is_skipped_with_a_warning_by_the_pool_pipeline(tmp_path, caplog):
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(tmp_path / 'dot.png')
    log = LogCapture(caplog)
    loader = LoadRGBImage(on_error='skip')  # as configured in every pre-training pipeline
    assert loader(dict(img_path=str(tmp_path / 'dot.png'))) is None
    assert loader(dict(img_path=str(tmp_path / 'dot.png'))) is None  # drawn again: not warned again
    [msg] = log.warnings
    assert 'dot.png: 1x1 px is smaller than min_size=16' in msg


def test_small_image_raises_with_on_error_raise_and_min_size_can_be_lowered(tmp_path):
    Image.fromarray(np.zeros((8, 30, 3), np.uint8)).save(tmp_path / 'strip.png')
    with pytest.raises(UnreadableImageError, match=r'strip\.png: 30x8 px is smaller than min_size=16'):
        LoadRGBImage()(dict(img_path=str(tmp_path / 'strip.png')))
    assert LoadRGBImage(min_size=8)(dict(img_path=str(tmp_path / 'strip.png')))['img'].shape == (8, 30, 3)


@pytest.mark.parametrize('name, content, reason', [
    ('text.jpg', b'hello, not an image', 'unreadable'),
    ('empty.png', b'', 'unreadable'),
    ('cut.png', png_header(64, 64)[:40], 'unreadable'),
])
def test_non_images_raise_naming_the_file(tmp_path, name, content, reason):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(UnreadableImageError, match=f'{name}: {reason}'):
        LoadRGBImage()(dict(img_path=str(tmp_path / name)))


def test_bad_loader_arguments_are_named():
    with pytest.raises(ValueError, match="LoadRGBImage: max_pixels must be a non-negative int or None, got -1"):
        LoadRGBImage(max_pixels=-1)
    with pytest.raises(ValueError, match="LoadRGBImage: on_error must be one of"):
        LoadRGBImage(on_error='ignore')


def test_pretraining_on_a_pool_with_a_huge_and_a_tiny_image_trains_and_names_both(tmp_path):
    pool = tmp_path / 'pool'
    write_images(pool, n=4)
    (pool / 'huge.png').write_bytes(png_header(20000, 10000))
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(pool / 'dot.png')
    (pool / 'sub').mkdir()
    (pool / 'sub' / 'back_to_pool').symlink_to(pool, target_is_directory=True)  # a symlink loop
    rc, log = run_tool(['tools/train.py', TINY_PRETRAIN, '--work-dir', str(tmp_path / 'wd'), '--cfg-options',
                        f'train_dataloader.dataset.data_root={pool}', 'train_cfg.max_iters=2',
                        'train_dataloader.sampler.shuffle=False', 'train_dataloader.num_workers=0'])
    assert rc == 0, log[-3000:]
    assert 'huge.png: 20000x10000' in log and 'dot.png: 1x1 px is smaller than min_size=16' in log
    assert f'{pool}/sub/back_to_pool is a symbolic link to {pool.resolve()}, a folder it is inside' in log
    assert (tmp_path / 'wd' / 'iter_2.pth').exists()


def test_symlink_loop_in_an_image_folder_is_skipped_with_a_warning(tmp_path, caplog):
    """mmengine's recursive listing follows sub/loop -> .. until the path cannot be resolved and stops the scan."""
    from mmengine.fileio.backends import LocalBackend
    from mmpretrain.datasets import CustomDataset
    pool = tmp_path / 'pool'
    write_images(pool, n=3)
    write_images(pool / 'sub', n=2, seed=1)
    (pool / 'sub' / 'loop').symlink_to('..', target_is_directory=True)
    (pool / 'sub' / 'self').symlink_to('.', target_is_directory=True)
    (pool / 'elsewhere').mkdir()
    (pool / 'also_sub').symlink_to(pool / 'sub', target_is_directory=True)  # not a loop: listed as mmengine does
    with pytest.raises(OSError, match='Too many levels of symbolic links'):
        list(LocalBackend().list_dir_or_file(str(pool), list_dir=False, recursive=True))
    log = LogCapture(caplog)
    ds = CustomDataset(data_root=str(pool), with_label=False, pipeline=[])
    found = sorted(osp.relpath(ds.get_data_info(i)['img_path'], pool) for i in range(len(ds)))
    assert found == ['also_sub/img_0.jpg', 'also_sub/img_1.jpg', 'img_0.jpg', 'img_1.jpg', 'img_2.jpg',
                     'sub/img_0.jpg', 'sub/img_1.jpg']
    assert sorted(log.warnings) == sorted(
        f'{pool}/{folder}/{link} is a symbolic link to {target}, a folder it is inside (a symlink loop); not '
        'followed: the files there are listed once'
        for folder in ('sub', 'also_sub')
        for link, target in (('loop', pool.resolve()), ('self', (pool / 'sub').resolve())))
