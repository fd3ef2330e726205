"""PosFieldMultiCrop: every view carries exactly the box (and flip) it was cut from."""
import numpy as np
import pytest

from projects.posfield.datasets.transforms import PosFieldMultiCrop, sample_crop_box
from projects.posfield.datasets.transforms.pos_field_multicrop import resize_bicubic

W, H = 200, 150


def coordinate_image():
    """Channel 0 holds each pixel's x, channel 1 its y (both < 256)."""
    img = np.zeros((H, W, 3), dtype=np.uint8)
    img[..., 0] = np.arange(W)[None, :]
    img[..., 1] = np.arange(H)[:, None]
    return img


def make(seed, **kw):
    args = dict(global_crops_number=2, global_crops_size=48, local_crops_number=4, local_crops_size=24,
                global_transforms=[], local_transforms=[], flip_prob=0.5, seed=seed)
    args.update(kw)
    return PosFieldMultiCrop(**args)


@pytest.mark.parametrize('seed', range(6))
def test_views_carry_their_recorded_box_and_flip(seed):
    out = make(seed)(dict(img=coordinate_image()))
    assert len(out['img']) == 6 and out['crop_boxes'].shape == (6, 4) and out['view_flips'].shape == (6,)
    assert tuple(out['source_hw']) == (H, W)
    for view, box, flip in zip(out['img'], out['crop_boxes'], out['view_flips']):
        size = view.shape[0]
        x0, x1 = box[0] * W, box[2] * W  # fractions of the source image -> source pixels
        y0, y1 = box[1] * H, box[3] * H
        centres = (np.arange(size) + 0.5) / size
        expect_x = x0 + centres * (x1 - x0) - 0.5
        expect_y = y0 + centres * (y1 - y0) - 0.5
        if flip:
            expect_x = expect_x[::-1]
        got_x = view[size // 2, :, 0].astype(float)
        got_y = view[:, size // 2, 1].astype(float)
        assert np.abs(got_x[1:-1] - expect_x[1:-1]).max() <= 1.0, (flip, got_x[:4], expect_x[:4])
        assert np.abs(got_y[1:-1] - expect_y[1:-1]).max() <= 1.0
    b = out['crop_boxes']
    assert (b >= 0).all() and (b <= 1).all() and (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()


def test_sizes_and_photometric_defaults_run():
    t = PosFieldMultiCrop(global_crops_size=32, local_crops_size=16, local_crops_number=3, seed=1)
    rng = np.random.default_rng(0)
    out = t(dict(img=(rng.random((40, 60, 3)) * 255).astype(np.uint8)))
    assert [v.shape for v in out['img']] == [(32, 32, 3)] * 2 + [(16, 16, 3)] * 3
    assert all(v.dtype == np.uint8 for v in out['img'])


def test_crop_box_sampler_stays_inside_and_falls_back():
    rng = np.random.default_rng(0)
    for _ in range(200):
        x0, y0, x1, y1 = sample_crop_box(rng, 30, 500, (0.05, 1.0), (3 / 4, 4 / 3))
        assert 0 <= x0 < x1 <= 500 and 0 <= y0 < y1 <= 30


def test_flipped_views_are_the_mirrored_crops():
    """A flipped view is exactly the unflipped view of the same box mirrored (same seed, flip forced)."""
    img = np.random.default_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8)
    flipped, plain = make(7, flip_prob=1.0)(dict(img=img.copy())), make(7, flip_prob=0.0)(dict(img=img.copy()))
    assert np.array_equal(flipped['crop_boxes'], plain['crop_boxes']) and flipped['view_flips'].all()
    for a, b in zip(flipped['img'], plain['img']):
        assert np.array_equal(a, b[:, ::-1]) and a.flags.c_contiguous


def test_views_are_dinov2s_bicubic_resized_crops():
    """DINOv2 resizes with torchvision's RandomResizedCrop(interpolation=BICUBIC) on PIL images: each view equals
    torchvision's resized_crop of its recorded box (then its flip) within one grey level."""
    import torchvision.transforms.functional as TF
    from PIL import Image
    img = (np.random.default_rng(0).random((H, W, 3)) * 255).astype(np.uint8)
    out = make(3)(dict(img=img))
    for view, box, flip in zip(out['img'], out['crop_boxes'], out['view_flips']):
        x0, y0, x1, y1 = (int(round(v)) for v in (box[0] * W, box[1] * H, box[2] * W, box[3] * H))
        ref = TF.resized_crop(Image.fromarray(img), y0, x0, y1 - y0, x1 - x0, [view.shape[0]] * 2,
                              interpolation=TF.InterpolationMode.BICUBIC)
        ref = np.asarray(ref)[:, ::-1] if flip else np.asarray(ref)
        assert np.abs(view.astype(int) - ref.astype(int)).max() <= 2


@pytest.mark.parametrize('size', [24, 96, 224])
def test_resize_is_pils_bicubic_on_noise_in_every_pass_order(size):
    """Uniform noise has the largest bicubic overshoot, which each pass clips to uint8, so the pass order shows:
    crops that shrink, grow, or shrink in one direction and grow in the other (Pillow's vertical-first case
    included) equal PIL's resize within 2 grey levels, nearly every pixel exactly."""
    import torch
    from PIL import Image
    rng = np.random.default_rng(size)
    img = rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)
    source = torch.from_numpy(img).permute(2, 0, 1)[None]
    shapes = [(size // 2, size * 5 // 4), (size * 5 // 4, size // 2), (size // 3, size * 2), (size * 2, size // 3),
              (size + 7, size - 5), (size - 5, size + 7), (size * 5 // 4, size * 5 // 4), (size // 2, size // 2)]
    differ, total = 0, 0
    for w, h in shapes:
        w, h = min(max(w, 2), 300), min(max(h, 2), 300)
        x0, y0 = int(rng.integers(0, 301 - w)), int(rng.integers(0, 301 - h))
        ref = np.asarray(Image.fromarray(img[y0:y0 + h, x0:x0 + w].copy()).resize((size, size), Image.BICUBIC))
        got = resize_bicubic(source[..., y0:y0 + h, x0:x0 + w], size)[0].permute(1, 2, 0).numpy()
        diff = np.abs(got.astype(int) - ref.astype(int))
        assert diff.max() <= 2, (w, h, size, diff.max())
        differ, total = differ + int((diff > 0).sum()), total + diff.size
    assert differ / total < 0.02
