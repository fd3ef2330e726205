"""MultiViewDataPreprocessor: one batch of tensors with canvas boxes (aspect kept), masks and patch-loss weights."""
import numpy as np
import pytest
import torch
from mmengine.structures import BaseDataElement

from projects.posfield.models.data_preprocessor import MultiViewBatch, MultiViewDataPreprocessor
from projects.posfield.models.utils.pos_field import DEFAULT_BETA, Placement, mean_placement


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
    args = dict(mean=[0, 0, 0], std=[1, 1, 1], patch_size=8, seed=0)
    args.update(kw)
    return MultiViewDataPreprocessor(**args)


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
    with pytest.raises(ValueError, match='masking has unknown keys'):
        preprocessor(masking=dict(content_ratios=0.5))
    with pytest.raises(ValueError, match='placement.mode'):
        preprocessor(placement=dict(mode='gaussian'))
    data = collated()
    del data['data_samples'][0].source_hw
    with pytest.raises(ValueError, match='source_hw'):
        preprocessor()(data, True)
    with pytest.raises(ValueError, match='patch_size'):
        preprocessor(patch_size=None)(collated(), True)


def test_mean_placement_uses_the_one_beta_default_and_keeps_aspect():
    s = DEFAULT_BETA[0] / sum(DEFAULT_BETA)
    assert mean_placement() == Placement((1 - s) / 2, (1 - s) / 2, s)
    wide = mean_placement(img_wh=(200, 100))
    assert wide == Placement((1 - s) / 2, (1 - s / 2) / 2, s)
    box = wide.image_box_to_canvas((0, 0, 200, 100), (200, 100))
    assert (box[2] - box[0]) / (box[3] - box[1]) == pytest.approx(2.0)
