"""LoadRGBImage: odd formats become correct RGB; broken files fail naming the file, or are skipped."""
import logging

import numpy as np
import pytest
from PIL import Image

from projects.posfield.datasets.transforms import LoadRGBImage, UnreadableImageError


def test_formats(tmp_path):
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8)
    Image.fromarray(gray, 'L').save(tmp_path / 'g.png')
    out = LoadRGBImage(min_size=None)(dict(img_path=str(tmp_path / 'g.png')))
    assert out['img'].shape == (8, 8, 3) and (out['img'][..., 0] == gray).all()

    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 10  # red, nearly transparent
    Image.fromarray(rgba, 'RGBA').save(tmp_path / 'a.png')
    out = LoadRGBImage(min_size=None)(dict(img_path=str(tmp_path / 'a.png')))
    assert out['img'].shape == (4, 5, 3) and (out['img'][..., 2] == 200).all()  # BGR: red is last
    assert out['img_shape'] == (4, 5)

    deep = np.array([[0, 65535], [32768, 257]], dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / 'd16.png')
    out = LoadRGBImage(min_size=None)(dict(img_path=str(tmp_path / 'd16.png')))
    assert out['img'].dtype == np.uint8
    assert out['img'][..., 0].tolist() == [[0, 255], [128, 1]]


def _truncated_jpeg(path):
    Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def test_broken_files_raise_naming_the_file(tmp_path):
    _truncated_jpeg(tmp_path / 'cut.jpg')
    (tmp_path / 'junk.jpg').write_bytes(b'not an image at all')
    for name in ('cut.jpg', 'junk.jpg', 'missing.jpg'):
        with pytest.raises(UnreadableImageError, match=name):
            LoadRGBImage()(dict(img_path=str(tmp_path / name)))
    Image.fromarray(np.zeros((10, 30, 3), np.uint8)).save(tmp_path / 'small.png')
    with pytest.raises(UnreadableImageError, match='small.png.*min_size=16'):
        LoadRGBImage(min_size=16)(dict(img_path=str(tmp_path / 'small.png')))


def test_skip_logs_and_returns_none(tmp_path, caplog):
    _truncated_jpeg(tmp_path / 'cut.jpg')
    from mmengine.logging import MMLogger
    logger = MMLogger.get_instance('skip_test')
    logger.propagate = True
    with caplog.at_level(logging.WARNING):
        assert LoadRGBImage(on_error='skip')(dict(img_path=str(tmp_path / 'cut.jpg'))) is None
    with pytest.raises(ValueError, match='on_error'):
        LoadRGBImage(on_error='ignore')


def test_pipeline_to_model_inputs(tmp_path):
    """The whole pipeline, multiview_collate and MultiViewDataPreprocessor give one MultiViewBatch."""
    from mmcv.transforms import Compose
    from mmengine.registry import FUNCTIONS, init_default_scope
    from mmpretrain.registry import MODELS, TRANSFORMS

    import projects.posfield  # noqa: F401
    init_default_scope('mmpretrain')
    for i in range(2):
        Image.fromarray((np.random.default_rng(i).random((50, 70, 3)) * 255).astype(np.uint8)).save(
            tmp_path / f'{i}.jpg')
    pipe = Compose([TRANSFORMS.build(t) for t in [
        dict(type='LoadRGBImage'),
        dict(type='PosFieldMultiCrop', global_crops_size=32, local_crops_number=3, local_crops_size=16),
        dict(type='PackInputs', algorithm_keys=['crop_boxes', 'view_flips', 'source_hw']),
    ]])
    collate = FUNCTIONS.get('multiview_collate')
    batch = collate([pipe(dict(img_path=str(tmp_path / f'{i}.jpg'))) for i in range(2)], patch_size=8,
                    masking=dict(mask_prob=1.0), seed=0)
    pre = MODELS.build(dict(type='MultiViewDataPreprocessor', mean=[0, 0, 0], std=[1, 1, 1], to_rgb=True))
    views = pre(batch, training=True)['inputs']
    assert tuple(views.global_views.shape) == (4, 3, 32, 32)
    assert [tuple(v.shape) for v in views.local_views] == [(6, 3, 16, 16)]
    assert tuple(views.global_boxes.shape) == (4, 4) and tuple(views.local_boxes[0].shape) == (6, 4)
    assert tuple(views.content_masks.shape) == (4, 4, 4) and (views.content_masks | views.pos_masks).any()


def test_rgb_photo_comes_back_as_exactly_its_bgr_bytes(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (17, 23, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / 'c.png')
    out = LoadRGBImage()(dict(img_path=str(tmp_path / 'c.png')))
    assert np.array_equal(out['img'], rgb[..., ::-1]) and out['img'].flags.c_contiguous


@pytest.mark.parametrize('mode,orientation', [('RGB', None), ('L', None), ('RGB', 6), ('RGB', 3), ('CMYK', None)])
def test_jpegs_decode_to_pils_pixels(tmp_path, mode, orientation):
    """Baseline RGB and grayscale JPEGs take torchvision's decoder, the rest PIL; either way the pixels are PIL's
    (convert('RGB') after exif_transpose), as BGR."""
    from PIL import ImageOps
    rgb = (np.random.default_rng(1).random((40, 56, 3)) * 255).astype(np.uint8)
    img = Image.fromarray(rgb).convert(mode)
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation  # 6: rotate 90 degrees clockwise to display; 3: 180 degrees
    img.save(tmp_path / 'p.jpg', quality=90, exif=exif)
    with Image.open(tmp_path / 'p.jpg') as f:
        want = np.asarray(ImageOps.exif_transpose(f).convert('RGB'))[..., ::-1]
    out = LoadRGBImage()(dict(img_path=str(tmp_path / 'p.jpg')))
    assert out['img'].shape == want.shape and out['img_shape'] == want.shape[:2]
    if orientation == 6:
        assert want.shape[:2] == (56, 40)
    assert np.array_equal(out['img'], want) and out['img'].flags.c_contiguous
