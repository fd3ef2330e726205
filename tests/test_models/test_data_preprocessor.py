"""The multi-view batch: multiview_collate (in the dataloader workers) builds canvas boxes (aspect kept), masks,
patch-loss weights and the step's indices; MultiViewDataPreprocessor moves it to the device and normalises it."""
import numpy as np
import pytest
import torch
from mmengine.dataset import default_collate
from mmengine.registry import FUNCTIONS
from mmengine.structures import BaseDataElement

import projects.posfield  # noqa: F401  (registers multiview_collate)
from projects.posfield.batch.collate import build_multiview_batch, check_collate_options
from projects.posfield.batch.multiview_batch import MultiViewBatch
from projects.posfield.models.data_preprocessor import MultiViewDataPreprocessor


def collated(batch=3, n_global=2, n_local=3, gsize=32, lsize=16, source_hw=(100, 200), crop_boxes=None):
    """What default_collate gives for PosFieldMultiCrop + PackInputs (uint8 views, per-image fields)."""
    rng = np.random.default_rng(0)
    views = [torch.from_numpy((rng.random((batch, 3, gsize, gsize)) * 255).astype(np.uint8)) for _ in range(n_global)]
    views += [torch.from_numpy((rng.random((batch, 3, lsize, lsize)) * 255).astype(np.uint8)) for _ in range(n_local)]
    samples = []
    for b in range(batch):
        s = BaseDataElement()
        boxes = crop_boxes if crop_boxes is not None else np.tile([[0.0, 0.0, 1.0, 1.0]], (n_global + n_local, 1))
        s.set_field(np.asarray(boxes, np.float32), 'crop_boxes')
        s.set_field(np.array([True, False] * n_global + [False] * (n_local - n_global)), 'view_flips')
        s.set_field(np.asarray(source_hw, np.int64), 'source_hw')
        samples.append(s)
    return dict(inputs=views, data_samples=samples)


def preprocessor(**kw):
    """The collate function's batch building (options checked here, as the collate function checks them) followed
    by the data preprocessor: collated views -> the normalised MultiViewBatch of the step."""
    args = dict(patch_size=8, seed=0)
    args.update(kw)
    rng = np.random.default_rng(args.pop('seed'))
    placement, masking = check_collate_options(args.pop('placement', None), args.pop('masking', None),
                                               args['patch_size'])
    pre = MultiViewDataPreprocessor(mean=[0, 0, 0], std=[1, 1, 1])

    def run(data, training=False):
        batch = build_multiview_batch(data['inputs'], data['data_samples'], rng, placement=placement,
                                      masking=masking, **args)
        return pre(dict(inputs=batch, data_samples=data['data_samples']), training)
    return run


def test_views_grouped_by_size_view_major():
    data = collated(batch=3, n_global=2, n_local=3)
    out = preprocessor()(data, True)['inputs']
    assert isinstance(out, MultiViewBatch) and out.n_global == 2 and out.batch_size == 3
    assert torch.equal(out.global_views[3:6], data['inputs'][1].float())  # row v * B + b: view v of image b
    assert len(out.local_views) == 1 and tuple(out.local_views[0].shape) == (9, 3, 16, 16)
    assert out.global_flips[:3].all() and not out.global_flips[3:].any()
    assert tuple(out.content_masks.shape) == (6, 4, 4) and tuple(out.mask_weights.shape) == (6, 16)


@pytest.mark.parametrize('hw', [(100, 200), (200, 100)], ids=['2:1 landscape', '1:2 portrait'])
def test_canvas_boxes_keep_the_source_aspect(hw):
    """A crop's canvas box has the crop's pixel aspect; the image's longer edge spans s of the canvas."""
    crops = [[0.0, 0.0, 1.0, 1.0], [0.25, 0.5, 0.75, 1.0], [0.1, 0.1, 0.3, 0.9], [0.5, 0.0, 1.0, 0.5],
             [0.0, 0.0, 0.5, 0.5]]
    h, w = hw
    for mode in ('beta', 'uniform', 'const'):
        out = preprocessor(placement=dict(mode=mode), seed=3)(collated(crop_boxes=crops, source_hw=hw),
                                                               True)['inputs']
        boxes = torch.cat([out.global_boxes] + out.local_boxes).view(-1, 3, 4).transpose(0, 1)  # (B, V, 4)
        for image_boxes in boxes:
            for crop, box in zip(crops, image_boxes.tolist()):
                pixel_aspect = ((crop[2] - crop[0]) * w) / ((crop[3] - crop[1]) * h)
                canvas_aspect = (box[2] - box[0]) / (box[3] - box[1])
                assert canvas_aspect == pytest.approx(pixel_aspect, rel=1e-4)
            whole = image_boxes[0]  # the first crop is the whole image
            extent = max(whole[2] - whole[0], whole[3] - whole[1])
            assert 0 <= whole[0] and 0 <= whole[1] and whole[2] <= 1 + 1e-6 and whole[3] <= 1 + 1e-6
            if mode == 'const':
                assert whole == pytest.approx([0.0, 0.0, 1.0, 0.5] if w > h else [0.0, 0.0, 0.5, 1.0])
            assert extent <= 1 + 1e-6


def test_placement_is_shared_by_the_views_of_an_image_and_drawn_per_image():
    crops = [[0.0, 0.0, 1.0, 1.0]] * 5
    out = preprocessor(seed=1)(collated(batch=4, crop_boxes=crops), True)['inputs']
    boxes = torch.cat([out.global_boxes] + out.local_boxes).view(5, 4, 4)  # (V, B, 4)
    assert torch.allclose(boxes, boxes[:1].expand_as(boxes))  # one placement for all views of an image
    assert len({tuple(b) for b in boxes[0].tolist()}) == 4  # a new one per image


def test_not_crop_aligned_gives_whole_image_boxes_and_no_flips():
    crops = [[0.25, 0.5, 0.75, 1.0]] * 5
    out = preprocessor(crop_aligned=False, placement=dict(mode='const'))(
        collated(crop_boxes=crops, source_hw=(64, 64)), True)['inputs']
    assert torch.allclose(out.global_boxes, torch.tensor([0., 0., 1., 1.]).expand(6, 4))
    assert not out.global_flips.any() and not out.local_flips[0].any()


@pytest.mark.parametrize('mode', ['beta', 'const'])
def test_not_crop_aligned_views_span_the_whole_canvas_whatever_the_source_aspect(mode):
    """Position-masking-only ablation: ordinary per-view positions, i.e. every view is the whole canvas
    (0, 0, 1, 1) (method spec), not the whole image placed on the canvas (which would depend on its aspect)."""
    crops = [[0.25, 0.5, 0.75, 1.0]] * 5
    out = preprocessor(crop_aligned=False, placement=dict(mode=mode))(
        collated(crop_boxes=crops, source_hw=(100, 200)), True)['inputs']
    whole = torch.tensor([0., 0., 1., 1.])
    assert torch.equal(out.global_boxes, whole.expand(6, 4))
    assert torch.equal(out.local_boxes[0], whole.expand(9, 4))


@pytest.mark.parametrize('seed', range(5))
def test_masked_token_weight_is_the_same_for_every_content_position_split(seed):
    """DINOv2's normalisation for every variant: per-token 1 / (masked tokens of its view) / global views."""
    totals = {}
    for ratio in (1.0, 0.0, 0.5):
        out = preprocessor(masking=dict(content_ratio=ratio), seed=seed)(collated(batch=5), True)['inputs']
        content, pos = out.content_masks.flatten(1), out.pos_masks.flatten(1)
        w = out.mask_weights
        assert torch.equal(w > 0, content | pos)
        totals[ratio] = float(w[content].sum() + w[pos].sum())
        masked_views = int((content | pos).any(1).sum())
        assert totals[ratio] == pytest.approx(masked_views / out.num_global_views)
    assert totals[1.0] == pytest.approx(totals[0.0]) and totals[0.5] == pytest.approx(totals[1.0])
    assert totals[0.5] == pytest.approx(int(10 * 0.5) / 10)


def test_clear_errors():
    with pytest.raises(ValueError, match='collate_fn.masking has unknown keys'):
        preprocessor(masking=dict(content_ratios=0.5))
    with pytest.raises(ValueError, match='collate_fn.placement.mode'):
        preprocessor(placement=dict(mode='gaussian'))
    data = collated()
    del data['data_samples'][0].source_hw
    with pytest.raises(ValueError, match='source_hw'):
        preprocessor()(data, True)
    with pytest.raises(ValueError, match='patch_size'):
        preprocessor(patch_size=None)(collated(), True)
    with pytest.raises(ValueError, match='not a multiple of train_dataloader.collate_fn.patch_size=5'):
        preprocessor(patch_size=5)(collated(), True)
    with pytest.raises(ValueError, match=r"\['masking', 'placement'\].*train_dataloader.collate_fn"):
        MultiViewDataPreprocessor(placement=dict(mode='const'), masking=dict(content_ratio=1.0))
    with pytest.raises(ValueError, match="collate_fn=dict\\(type='multiview_collate'"):
        MultiViewDataPreprocessor()(collated(), True)


def _per_image(data):
    """The per-image pipeline outputs that ``collated`` stands for."""
    n = data['inputs'][0].shape[0]
    return [dict(inputs=[v[b] for v in data['inputs']], data_samples=data['data_samples'][b]) for b in range(n)]


def test_multiview_collate_is_default_collate_then_the_batch():
    data = collated(batch=4)
    collate = FUNCTIONS.get('multiview_collate')
    options = dict(patch_size=8, masking=dict(mask_prob=1.0), placement=dict(mode='uniform'))
    got = collate(_per_image(data), seed=5, **options)['inputs']
    placement, masking = check_collate_options(options['placement'], options['masking'], 8)
    ref_data = default_collate(_per_image(data))
    ref = build_multiview_batch(ref_data['inputs'], ref_data['data_samples'], np.random.default_rng(5),
                                placement=placement, masking=masking, patch_size=8)
    assert got.global_views.dtype == torch.uint8  # cast and normalised on the device, by the preprocessor
    for name in ('global_views', 'global_boxes', 'content_masks', 'pos_masks', 'mask_weights', 'kept_rows',
                 'masked_in_kept', 'masked_weights'):
        assert torch.equal(getattr(got, name), getattr(ref, name)), name
    assert (got.n_content, got.n_pos, got.max_kept_per_view) == (ref.n_content, ref.n_pos, ref.max_kept_per_view)
    with pytest.raises(ValueError, match='collate_fn.masking has unknown keys'):
        collate(_per_image(data), patch_size=8, masking=dict(ratio=0.3))


@pytest.mark.parametrize('seed', range(4))
def test_indices_select_what_the_boolean_masks_select(seed):
    """The precomputed indices equal boolean-mask selection: kept rows in row-major order, masked rows content
    first, their weights, the counts and the bound per view."""
    out = preprocessor(masking=dict(mask_prob=0.75), seed=seed)(collated(batch=4), True)['inputs']
    content, pos = out.content_masks.flatten(1), out.pos_masks.flatten(1)
    keep = content | pos
    tokens = torch.randn(keep.shape[0], keep.shape[1], 3)
    kept = tokens.flatten(0, 1)[out.kept_rows]
    assert torch.equal(kept, tokens[keep])
    assert torch.equal(kept[out.masked_in_kept], torch.cat([tokens[content], tokens[pos]]))
    assert torch.equal(out.masked_weights, torch.cat([out.mask_weights[content], out.mask_weights[pos]]))
    assert (out.n_content, out.n_pos) == (int(content.sum()), int(pos.sum())) and out.n_content + out.n_pos > 0
    assert out.max_kept_per_view == int(keep.sum(1).max())
    # a batch built by hand derives the same indices
    again = MultiViewBatch(**{k: getattr(out, k) for k in ('global_views', 'global_boxes', 'global_flips',
                                                            'local_views', 'local_boxes', 'local_flips',
                                                            'content_masks', 'pos_masks', 'mask_weights',
                                                            'n_global', 'batch_size')})
    for name in ('kept_rows', 'masked_in_kept', 'masked_weights'):
        assert torch.equal(getattr(again, name), getattr(out, name)), name
    assert (again.n_content, again.n_pos, again.max_kept_per_view) == (out.n_content, out.n_pos,
                                                                       out.max_kept_per_view)


def test_preprocessor_normalises_like_mmpretrain():
    from mmpretrain.models.utils import SelfSupDataPreprocessor
    data = collated()
    mean, std = [10., 20., 30.], [2., 3., 4.]
    ours = MultiViewDataPreprocessor(mean=mean, std=std, to_rgb=True)
    batch = build_multiview_batch(data['inputs'], data['data_samples'], np.random.default_rng(0),
                                  placement=dict(mode='const'), masking=check_collate_options(None, None, 8)[1],
                                  patch_size=8)
    got = ours(dict(inputs=batch, data_samples=data['data_samples']), True)['inputs']
    ref = SelfSupDataPreprocessor(mean=mean, std=std, to_rgb=True)(dict(inputs=data['inputs'],
                                                                         data_samples=data['data_samples']),
                                                                    True)['inputs']
    assert torch.equal(got.global_views, torch.cat(ref[:2]))
    assert torch.equal(got.local_views[0], torch.cat(ref[2:]))
    assert torch.equal(got.kept_rows, batch.kept_rows)  # everything else passes through
