"""MultiCropPhotometric: DINO's photometric augmentation on the device draws what the worker path draws.

Per operation, the device op with given parameters equals the worker's op with the same parameters; over many
views, each operation fires per view index as often on both paths, and its parameters have the same ranges and
distribution (the worker path's draws are recorded from inside its transforms).
"""
import math
import random
from collections import defaultdict
from itertools import permutations

import cv2
import numpy as np
import pytest
import torch
from kornia.enhance import adjust_hue
from mmcv.transforms import RandomApply, RandomGrayscale
from mmengine.structures import BaseDataElement
from mmpretrain.datasets.transforms import GaussianBlur, Solarize
from scipy import stats

from projects.common.transforms import HueSafeColorJitter
from projects.posfield.batch.collate import build_multiview_batch, check_collate_options
from projects.posfield.datasets.transforms import PosFieldMultiCrop
from projects.posfield.models.data_preprocessor import MultiViewDataPreprocessor
from projects.posfield.models.photometric import (
    DINO_GLOBAL_RECIPES,
    DINO_LOCAL_RECIPE,
    JITTER_OPS,
    OPS,
    MultiCropPhotometric,
    shift_hue,
)

Z_MAX = 4.5  # two-sided; the streams are seeded, so a pass is reproducible


def smooth_image(seed, size=32):
    """A smooth colourful BGR uint8 image (blur and hue behave as on photographs, not as on noise)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 4, 3)).astype(np.uint8)
    return np.clip(cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC), 0, 255)


def params_for(n=1, **kw):
    """Parameters of :meth:`MultiCropPhotometric.augment` with every operation off unless given."""
    p = {op: torch.zeros(n, dtype=torch.bool) for op in OPS}
    p.update({name: torch.ones(n) for name in ('brightness', 'contrast', 'saturation', 'sigma')})
    p.update(hue=torch.zeros(n), order=torch.arange(4).repeat(n, 1))
    for key, value in kw.items():
        p[key] = torch.as_tensor(value).expand_as(p[key]).clone()
    return p


def on_device(img_bgr, **kw):
    """One BGR uint8 image through the device op(s) -> float BGR 0-255 (H, W, 3)."""
    x = torch.from_numpy(np.ascontiguousarray(img_bgr[..., ::-1])).permute(2, 0, 1)[None].float() / 255
    out = MultiCropPhotometric().augment(x, params_for(**kw))
    return out[0].permute(1, 2, 0).numpy()[..., ::-1] * 255


def jitter_on_worker(img_bgr, monkeypatch, order, **factors):
    """The worker's HueSafeColorJitter with its random order and factors forced."""
    jitter = HueSafeColorJitter(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)
    for name in JITTER_OPS:
        setattr(jitter, name, (factors[name], factors[name]) if name in factors else None)
    monkeypatch.setattr(np.random, 'permutation', lambda n: np.array(order))
    return jitter(dict(img=img_bgr.copy()))['img'].astype(np.float64)


@pytest.mark.parametrize('name,value,tol', [('brightness', 0.6, 1.0), ('brightness', 1.37, 1.0),
                                            ('contrast', 0.62, 1.6), ('contrast', 1.4, 1.6),
                                            ('saturation', 0.8, 1.6), ('saturation', 1.2, 1.6),
                                            ('hue', -0.1, 10.0), ('hue', 0.043, 10.0)])
def test_each_jitter_op_equals_the_worker_op(monkeypatch, name, value, tol):
    img = smooth_image(1)
    worker = jitter_on_worker(img, monkeypatch, [0, 1, 2, 3], **{name: value})
    device = on_device(img, jitter=True, **{name: value})
    # the worker rounds to uint8 after each op and its hue goes through 8-bit HSV (hue steps of 1/256 turn move a
    # channel by up to chroma * 6 / 256); the device stays in float
    assert np.abs(worker - device).max() <= tol
    assert np.abs(worker - device).mean() <= 0.6
    assert np.abs(device - img).mean() > 3  # the op did something


@pytest.mark.parametrize('order', [(0, 1, 2, 3), (3, 2, 1, 0), (2, 3, 0, 1), (1, 3, 2, 0)])
def test_jitter_order_per_sample_equals_the_worker(monkeypatch, order):
    """All four jitter ops in a given order: the device's one-pass dispatch equals the worker's sequence."""
    img = smooth_image(2)
    factors = dict(brightness=1.3, contrast=0.7, saturation=1.2, hue=0.08)
    worker = jitter_on_worker(img, monkeypatch, list(order), **factors)
    device = on_device(img, jitter=True, order=torch.tensor(order), **factors)
    assert np.abs(worker - device).max() <= 10.0 and np.abs(worker - device).mean() <= 1.5
    # two samples of one batch with different orders each get their own sequence
    x = torch.from_numpy(np.ascontiguousarray(img[..., ::-1])).permute(2, 0, 1)[None].float().repeat(2, 1, 1, 1) / 255
    other = tuple(reversed(order))
    p = params_for(2, jitter=True, **factors)
    p['order'] = torch.tensor([order, other])
    both = MultiCropPhotometric().augment(x, p)
    alone = [MultiCropPhotometric().augment(x[:1], params_for(1, jitter=True, order=torch.tensor(o), **factors))
             for o in (order, other)]
    assert torch.allclose(both[0], alone[0][0], atol=1e-6) and torch.allclose(both[1], alone[1][0], atol=1e-6)
    assert not torch.allclose(both[0], both[1], atol=1e-3)


def test_hue_equals_kornia_adjust_hue():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(32, 3, 9, 9, generator=g)
    x[:6] = x[:6].round()  # saturated colours, black, white
    x[6:12, 1] = x[6:12, 0]  # ties between channels
    x[12:14] = x[12:14, :1]  # gray (no chroma)
    turns = torch.rand(32, generator=g) - 0.5
    assert torch.allclose(shift_hue(x, turns), adjust_hue(x, turns * 2 * math.pi), atol=1e-5)


def test_grayscale_and_solarize_equal_the_worker_ops():
    img = smooth_image(3)
    gray = RandomGrayscale(prob=1.0, keep_channels=True, channel_weights=(0.114, 0.587, 0.2989))
    assert np.abs(gray(dict(img=img.copy()))['img'] - on_device(img, grayscale=True)).max() <= 1.0
    ramp = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)  # every value, 128 included
    solar = Solarize(thr=128, prob=1.0)(dict(img=ramp.copy()))['img']
    assert np.abs(solar - on_device(ramp, solarize=True)).max() <= 1e-3


@pytest.mark.parametrize('sigma', [0.1, 0.6, 1.3, 2.0])
def test_blur_equals_the_worker_blur(sigma):
    """PIL's GaussianBlur (the worker's, an extended box filter of the same variance) and the device's Gaussian."""
    img = smooth_image(4, size=40)
    img[8:24, 10:14] = (255, 0, 40)  # a sharp bar, so the blur has edges to act on
    worker = GaussianBlur(radius=sigma, prob=1.0)(dict(img=img.copy()))['img'].astype(np.float64)
    device = on_device(img, blur=True, sigma=sigma)
    assert np.abs(worker - device).mean() <= 1.0 and np.abs(worker - device).max() <= 16
    if sigma >= 1:  # a sigma off by 25 % is told apart
        wrong = on_device(img, blur=True, sigma=sigma * 1.25)
        assert np.abs(worker - device).mean() < 0.6 * np.abs(worker - wrong).mean()


# ------------------------------------------------------------------------------------------------- statistics
def _spy(obj, attr, record):
    original = getattr(obj, attr)

    def spied(*args, **kwargs):
        out = original(*args, **kwargs)
        record(out)
        return out

    setattr(obj, attr, spied)


def _spy_jitter(jitter, group, draws):
    original = jitter.transform

    def transform(results):
        perms, values = [], []
        real_permutation, real_uniform = np.random.permutation, np.random.uniform

        def permutation(n):
            perms.append(real_permutation(n))
            return perms[-1]

        def uniform(low, high):
            values.append(real_uniform(low, high))
            return values[-1]

        np.random.permutation, np.random.uniform = permutation, uniform
        try:
            out = original(results)
        finally:
            np.random.permutation, np.random.uniform = real_permutation, real_uniform
        for op, value in zip(perms[0], values):  # factors are drawn in the order the ops run
            draws[group, JITTER_OPS[op]].append(value)
        draws[group, 'order'].append(tuple(int(op) for op in perms[0]))
        return out

    jitter.transform = transform


def worker_draws(n_images, seed=0):
    """Run the worker path's PosFieldMultiCrop (2 global + 4 local views) and record, per view group, whether
    each operation fired and every parameter it drew."""
    crop = PosFieldMultiCrop(global_crops_size=16, local_crops_number=4, local_crops_size=8, seed=seed)
    draws = defaultdict(list)
    groups = (('global0', crop.global_pipelines[0]), ('global1', crop.global_pipelines[1]),
              ('local', crop.local_pipeline))
    for group, pipeline in groups:
        seen = set()
        for t in pipeline.transforms:
            if isinstance(t, RandomApply):
                _spy(t, 'random_apply', lambda fired, g=group: draws[g, 'jitter'].append(bool(fired)))
                jitter, = t.transforms.transforms
                assert isinstance(jitter, HueSafeColorJitter)
                _spy_jitter(jitter, group, draws)
                seen.add('jitter')
            elif isinstance(t, RandomGrayscale):
                _spy(t, '_random_prob', lambda u, g=group, p=t.prob: draws[g, 'grayscale'].append(u < p))
                seen.add('grayscale')
            elif isinstance(t, GaussianBlur):
                _spy(t, 'random_disable', lambda off, g=group: draws[g, 'blur'].append(not off))
                _spy(t, 'random_magnitude', lambda s, g=group: draws[g, 'sigma'].append(s))
                seen.add('blur')
            elif isinstance(t, Solarize):
                assert t.thr == 128
                _spy(t, 'random_disable', lambda off, g=group: draws[g, 'solarize'].append(not off))
                seen.add('solarize')
            else:
                raise AssertionError(f'unexpected worker transform {t!r}: extend this test and MultiCropPhotometric')
    np.random.seed(seed)
    random.seed(seed)
    img = smooth_image(5, size=24)
    for _ in range(n_images):
        crop(dict(img=img.copy()))
    n_views = dict(global0=n_images, global1=n_images, local=4 * n_images)
    for group, n in n_views.items():
        for op in OPS:
            if not draws[group, op]:  # an operation the group's pipeline does not have never fires
                draws[group, op] = [False] * n
            assert len(draws[group, op]) == n
    return draws


def device_draws(n_images, seed=0):
    aug = MultiCropPhotometric(seed=seed)
    probs = aug.view_probs(6, 2, 'cpu')[:, None].expand(-1, n_images, -1).reshape(-1, len(OPS))  # as forward
    params = aug.sample_params(probs)
    view = torch.arange(6).repeat_interleave(n_images)
    draws = {}
    for group, mask in (('global0', view == 0), ('global1', view == 1), ('local', view >= 2)):
        for op in OPS:
            draws[group, op] = params[op][mask].tolist()
        jitter = params['jitter'][mask]
        for name in JITTER_OPS:
            draws[group, name] = params[name][mask][jitter].tolist()
        draws[group, 'sigma'] = params['sigma'][mask][params['blur'][mask]].tolist()
        draws[group, 'order'] = [tuple(o) for o in params['order'][mask][jitter].tolist()]
    return draws, aug


def _z(k1, n1, k2, n2):
    p = (k1 + k2) / (n1 + n2)
    se = math.sqrt(max(p * (1 - p), 1e-12) * (1 / n1 + 1 / n2))
    return abs(k1 / n1 - k2 / n2) / se


def test_device_path_draws_the_worker_distribution():
    worker = worker_draws(2000)
    device, aug = device_draws(20000)
    nominal = dict(global0=DINO_GLOBAL_RECIPES[0], global1=DINO_GLOBAL_RECIPES[1], local=DINO_LOCAL_RECIPE)
    assert aug.ranges['brightness'] == (0.6, 1.4) and aug.ranges['contrast'] == (0.6, 1.4)
    assert aug.ranges['saturation'] == (0.8, 1.2) and aug.ranges['hue'] == (-0.1, 0.1)
    assert aug.ranges['sigma'] == (0.1, 2.0)
    for group in nominal:
        for op in OPS:  # how often each operation fires per view index
            w, d = np.asarray(worker[group, op]), np.asarray(device[group, op])
            p = nominal[group].get(op, 0.0)
            if p in (0.0, 1.0):
                assert w.all() == d.all() == (p == 1.0) and w.any() == d.any() == (p == 1.0), (group, op)
                continue
            assert _z(w.sum(), w.size, d.sum(), d.size) < Z_MAX, (group, op, w.mean(), d.mean())
            assert abs(w.mean() - p) < Z_MAX * math.sqrt(p * (1 - p) / w.size), (group, op, w.mean(), p)
            assert abs(d.mean() - p) < Z_MAX * math.sqrt(p * (1 - p) / d.size), (group, op, d.mean(), p)
        for name in JITTER_OPS + ('sigma', ):  # each parameter's range and distribution
            w, d = np.asarray(worker[group, name]), np.asarray(device[group, name])
            if group == 'global1' and name == 'sigma':
                assert w.size > 100
            low, high = aug.ranges[name]
            for x in (w, d):
                assert low <= x.min() and x.max() <= high, (group, name)
                assert x.min() - low < 0.02 * (high - low) and high - x.max() < 0.02 * (high - low), (group, name)
            assert stats.ks_2samp(w, d).pvalue > 1e-3, (group, name)
            assert stats.kstest(d, stats.uniform(low, high - low).cdf).pvalue > 1e-3, (group, name)
        for draws in (worker, device):  # the jitter order: a uniform random permutation per sample
            counts = defaultdict(int)
            for order in draws[group, 'order']:
                counts[order] += 1
            assert set(counts) <= set(permutations(range(4)))
            assert stats.chisquare([counts[o] for o in permutations(range(4))]).pvalue > 1e-3, group


# ------------------------------------------------------------------------------------------------- forward
def constant_views(batch, colour_bgr, n_global=2, n_local=3, gsize=8, lsize=4, dtype=torch.uint8):
    c = torch.tensor(colour_bgr, dtype=dtype).view(1, 3, 1, 1)
    return ([c.expand(batch, 3, gsize, gsize).clone() for _ in range(n_global)]
            + [c.expand(batch, 3, lsize, lsize).clone() for _ in range(n_local)])


def test_forward_routes_each_view_to_its_recipe():
    """By effect: a grayscale view has equal channels (a strong colour stays coloured through the jitter); a bright
    colour stays above 128 through the jitter and falls below it when solarised (blur keeps a constant view)."""
    batch = 1000
    coloured = MultiCropPhotometric(seed=1)(constant_views(batch, (200, 50, 20)))
    bright = MultiCropPhotometric(seed=2)(constant_views(batch, (255, 250, 245)))
    assert [tuple(o.shape) for o in coloured] == [(batch, 3, 8, 8)] * 2 + [(batch, 3, 4, 4)] * 3
    assert all(o.dtype == torch.float32 and o.min() >= 0 and o.max() <= 255 for o in coloured + bright)
    for v, (view, p_solarize) in enumerate(zip(coloured, [0.0, 0.2, 0.0, 0.0, 0.0])):
        gray = (view.amax(1) - view.amin(1)).amax((1, 2)) < 1e-3
        solarized = bright[v].amax((1, 2, 3)) < 128
        assert (solarized | (bright[v].amin((1, 2, 3)) > 128)).all()
        for rate, p in ((gray.float().mean().item(), 0.2), (solarized.float().mean().item(), p_solarize)):
            assert abs(rate - p) <= Z_MAX * math.sqrt(p * (1 - p) / batch) + 1e-9, (v, rate, p)
    custom = MultiCropPhotometric(global_recipes=[dict(grayscale=0.9), dict(grayscale=0.1)],
                                  local_recipe=dict(grayscale=0.5), seed=2)
    out = custom(constant_views(batch, (200, 50, 20), n_global=3))  # globals use the recipes in turn
    for view, p in zip(out, (0.9, 0.1, 0.9, 0.5, 0.5, 0.5)):
        rate = ((view.amax(1) - view.amin(1)).amax((1, 2)) < 1e-3).float().mean().item()
        assert abs(rate - p) <= Z_MAX * math.sqrt(p * (1 - p) / batch), (rate, p)
    # num_global_views overrides the size grouping: all five views of one size, the first two global
    out = custom(constant_views(batch, (200, 50, 20), n_global=5, n_local=0), num_global_views=2)
    for view, p in zip(out, (0.9, 0.1, 0.5, 0.5, 0.5)):
        rate = ((view.amax(1) - view.amin(1)).amax((1, 2)) < 1e-3).float().mean().item()
        assert abs(rate - p) <= Z_MAX * math.sqrt(p * (1 - p) / batch), (rate, p)


def test_forward_keeps_the_channel_order_and_accepts_float():
    g = torch.Generator().manual_seed(0)
    bgr = [(torch.rand(6, 3, 16, 16, generator=g) * 255).round() for _ in range(2)]
    bgr += [(torch.rand(6, 3, 8, 8, generator=g) * 255).round() for _ in range(2)]
    out_bgr = MultiCropPhotometric(seed=3)([v.to(torch.uint8) for v in bgr])
    out_rgb = MultiCropPhotometric(seed=3, channel_order='rgb')([v.flip(1) for v in bgr])  # float input
    for a, b in zip(out_bgr, out_rgb):
        assert torch.allclose(a, b.flip(1), atol=1e-3)
    # with nothing firing, the views come back unchanged
    off = dict(jitter=0.0, grayscale=0.0, blur=0.0, solarize=0.0)
    same = MultiCropPhotometric(global_recipes=[off], local_recipe=off)(bgr)
    assert all(torch.allclose(a, b, atol=1e-3) for a, b in zip(same, bgr))


def test_forward_never_reads_values_on_the_host():
    """On the meta device every value read (.item(), bool(), nonzero, masking) fails: none is made."""
    aug = MultiCropPhotometric().to('meta')
    views = [torch.empty(4, 3, 16, 16, dtype=torch.uint8, device='meta') for _ in range(2)]
    views += [torch.empty(4, 3, 8, 8, dtype=torch.uint8, device='meta') for _ in range(3)]
    out = aug(views)
    assert [o.device.type for o in out] == ['meta'] * 5 and tuple(out[2].shape) == (4, 3, 8, 8)


@pytest.mark.parametrize('kw,match', [
    (dict(global_recipes=[]), 'at least one'), (dict(local_recipe=dict(blurr=0.5)), 'keys from'),
    (dict(local_recipe=dict(blur=1.5)), r'\[0, 1\]'), (dict(hue=0.7), 'hue'),
    (dict(blur_sigma=(0.0, 2.0)), 'blur_sigma'),
    (dict(channel_order='hsv'), 'channel_order'), (dict(brightness=-0.1), 'brightness')])
def test_bad_arguments_are_named(kw, match):
    with pytest.raises(ValueError, match=match):
        MultiCropPhotometric(**kw)


def test_forward_rejects_views_that_are_not_image_batches():
    aug = MultiCropPhotometric()
    with pytest.raises(ValueError, match='view 1 has shape'):
        aug([torch.zeros(2, 3, 8, 8), torch.zeros(3, 3, 8, 8)])
    with pytest.raises(ValueError, match='non-empty list'):
        aug(torch.zeros(2, 3, 8, 8))


def test_worker_path_option():
    img = smooth_image(6, size=48)
    plain = PosFieldMultiCrop(global_crops_size=16, local_crops_number=2, local_crops_size=8, photometric=False,
                              flip_prob=0.0, seed=0)
    geometry = PosFieldMultiCrop(global_crops_size=16, local_crops_number=2, local_crops_size=8, global_transforms=[],
                                 local_transforms=[], flip_prob=0.0, seed=0)
    a, b = plain(dict(img=img.copy())), geometry(dict(img=img.copy()))
    assert all(np.array_equal(x, y) for x, y in zip(a['img'], b['img']))  # crops only, same boxes
    assert np.array_equal(a['crop_boxes'], b['crop_boxes'])
    with pytest.raises(ValueError, match='photometric=False'):
        PosFieldMultiCrop(photometric=False, local_transforms=[dict(type='Solarize', thr=128)])


def test_data_preprocessor_augments_in_training_only_before_normalising():
    batch = 64
    views = constant_views(batch, (200, 50, 20), n_global=2, n_local=2, gsize=16, lsize=8)
    samples = []
    for _ in range(batch):
        s = BaseDataElement()
        s.set_field(np.tile(np.float32([[0, 0, 1, 1]]), (4, 1)), 'crop_boxes')
        s.set_field(np.zeros(4, bool), 'view_flips')
        s.set_field(np.array([16, 16]), 'source_hw')
        samples.append(s)
    gray_all = dict(grayscale=1.0)
    pre = MultiViewDataPreprocessor(mean=[100, 100, 100], std=[2, 2, 2], to_rgb=True,
                                    photometric=dict(type='MultiCropPhotometric', global_recipes=[gray_all],
                                                     local_recipe=gray_all))
    assert isinstance(pre.photometric, MultiCropPhotometric)
    assert pre.apply(lambda module: None) is pre  # nn.Module.apply still walks the submodule
    placement, masking = check_collate_options(None, None, patch_size=8)
    multiview = build_multiview_batch(views, samples, np.random.default_rng(0), placement=placement,
                                      masking=masking, patch_size=8)
    train = pre(dict(inputs=multiview, data_samples=samples), True)['inputs']
    pixels = train.global_views * 2 + 100  # undo the normalisation
    assert torch.allclose(pixels, pixels[:, :1].expand_as(pixels), atol=1e-3)  # grayscale, then normalised
    gray = 0.2989 * 20 + 0.587 * 50 + 0.114 * 200  # the weights act on R, G, B of the BGR views
    assert torch.allclose(pixels, torch.full_like(pixels, gray / 0.9999), atol=1e-2)
    test = pre(dict(inputs=multiview, data_samples=samples), False)['inputs']
    assert torch.allclose(test.global_views * 2 + 100, torch.cat(views[:2]).float()[:, [2, 1, 0]])


def test_every_pretraining_config_augments_once():
    """Each config with a PosFieldMultiCrop pipeline runs the photometric augmentation on exactly one path."""
    from mmengine.config import Config

    from tests.helpers import SHIPPED_CONFIGS
    seen = 0
    for path in SHIPPED_CONFIGS:
        cfg = Config.fromfile(path)
        dataset = cfg.get('train_dataloader', {}).get('dataset', {})
        while 'pipeline' not in dataset and 'dataset' in dataset:
            dataset = dataset['dataset']
        crops = [t for t in dataset.get('pipeline', []) if isinstance(t, dict) and t.get('type') == 'PosFieldMultiCrop']
        if not crops:
            continue
        seen += 1
        in_worker = crops[0].get('photometric', True)
        on_device = cfg.model.data_preprocessor.get('photometric') is not None
        assert in_worker != on_device, (path, in_worker, on_device)
    assert seen >= 16
