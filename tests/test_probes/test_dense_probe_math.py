"""Known values of the dense probes: per-patch labels, mIoU, the all-background floor, and a probe on features
that encode the label exactly (mIoU 100)."""

import numpy as np
import pytest
import torch

from projects.probes import (
    IGNORE,
    CocoProbeDataError,
    ProbeData,
    all_background_miou,
    confusion_matrix,
    load_split,
    miou,
    patch_labels,
    probe_row,
    raw_pixel_encoder,
    semantic_map,
    train_patch_probe,
)
from projects.probes.dense import at_lrs, cross_validate, floor_rows, image_folds, shared_lrs, summarise
from tests.helpers import box_polygon, coco_instance, write_coco_split


def test_patch_labels_majority_ignore_and_ties():
    m = np.zeros((4, 6), np.uint8)
    m[:2, :2] = [[1, 1], [1, 0]]          # cell 0: three 1s, one 0 -> 1
    m[:2, 2:4] = [[2, 2], [1, 1]]         # cell 1: tie 1/2 -> the smaller label, 1
    m[:2, 4:6] = IGNORE                   # cell 2: nothing votes -> IGNORE
    m[2:, 0:2] = [[IGNORE, IGNORE], [IGNORE, 2]]  # cell 3: the one voting pixel wins
    assert patch_labels(m, 2, 3).tolist() == [1, 1, IGNORE, 2, 0, 0]
    with pytest.raises(ValueError, match='multiple of the patch size'):
        patch_labels(m, 4, 3)


def test_miou_perfect_and_known_confusion():
    gt = torch.tensor([0, 0, 1, 1, 2, IGNORE])
    assert miou(confusion_matrix(gt.clamp(max=2), gt, 3))['miou'] == pytest.approx(100.0)
    pred = torch.tensor([0, 1, 1, 1, 0, 0])
    res = miou(confusion_matrix(pred, gt, 4))  # class 3 absent everywhere: left out of the mean
    # IoU: bg 1/(2+1) (TP 1, FN 1, FP 1 from the class-2 patch); class 1: 2/3; class 2: 0
    assert res['per_class_iou'][:3] == pytest.approx([100 / 3, 200 / 3, 0.0])
    assert res['per_class_iou'][3] is None
    assert res['miou'] == pytest.approx((100 / 3 + 200 / 3) / 3)
    assert res['accuracy'] == pytest.approx(60.0)


def test_all_background_floor_is_background_fraction_over_present_classes():
    gt = torch.tensor([0] * 6 + [1, 1, 3, IGNORE])  # 9 valid patches, 6 background, classes {0,1,3} present
    assert all_background_miou(gt, 4) == pytest.approx(100 * (6 / 9) / 3)


def _one_hot_features(labels, num_classes, gen):
    return torch.nn.functional.one_hot(labels.clamp(max=num_classes - 1), num_classes).float() * 3 \
        + 0.1 * torch.randn(len(labels), num_classes, generator=gen)


def test_probe_on_features_that_encode_the_label_reaches_100():
    gen = torch.Generator().manual_seed(0)
    k = 4
    ytr = torch.randint(0, k, (2000,), generator=gen)
    ytr[::7] = 0
    yva = torch.randint(0, k, (500,), generator=gen)
    imgs = torch.arange(2000) // 100
    res = train_patch_probe(_one_hot_features(ytr, k, gen), ytr, imgs, _one_hot_features(yva, k, gen), yva, k,
                            epochs=10)
    assert res['miou'] == pytest.approx(100.0)
    assert res['selected_by'] == 'mean hold-out mIoU over 5 image folds' and len(res['per_lr']) == 4


def test_probe_on_uninformative_features_stays_near_chance():
    gen = torch.Generator().manual_seed(1)
    ytr, yva = torch.randint(0, 2, (2000,), generator=gen), torch.randint(0, 2, (1000,), generator=gen)
    res = train_patch_probe(torch.randn(2000, 8, generator=gen), ytr, torch.arange(2000) // 50,
                            torch.randn(1000, 8, generator=gen), yva, 2, epochs=5)
    assert res['accuracy'] < 60.0


def test_image_folds_partition_the_images():
    """Every image in exactly one fold, fold sizes within one, all of an image's samples in its fold; no fold
    with fewer than two images; the same seed gives the same folds."""
    img = torch.arange(23).repeat_interleave(3)
    folds = image_folds(img, 5, torch.Generator().manual_seed(0))
    assert len(folds) == 5
    assert torch.equal(torch.stack(folds).sum(0), torch.ones(len(img), dtype=torch.long))
    sizes = sorted(len(torch.unique(img[f])) for f in folds)
    assert sizes == [4, 4, 5, 5, 5]
    for f in folds:
        assert bool((f.view(23, 3) == f.view(23, 3)[:, :1]).all())
    again = image_folds(img, 5, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(folds, again))
    assert len(image_folds(img, 40, torch.Generator().manual_seed(0))) == 23
    assert image_folds(torch.zeros(5, dtype=torch.long), 5, torch.Generator()) == []
    assert image_folds(img, 1, torch.Generator()) == []


def test_cross_validate_picks_the_best_mean_over_folds():
    """The rate with the best mean over folds wins even where one fold prefers another; folds that hold out
    nothing, everything or score None do not count; without a fold the first rate is chosen."""
    n = 10
    folds = [torch.arange(n) < 5, torch.arange(n) >= 5, torch.zeros(n, dtype=torch.bool),
             torch.ones(n, dtype=torch.bool), torch.arange(n) == 0]
    calls = []

    def scores(fit, hold):
        calls.append((fit.clone(), hold.clone()))
        assert not bool((fit & hold).any())
        if int(hold.sum()) == 1:
            return [None, None, None]
        return [1.0, 5.0, 0.0] if bool(hold[0]) else [4.0, 3.0, 0.0]  # means 2.5, 4.0, 0.0
    best, how, mean, per_fold = cross_validate(folds, scores, 3, 'mIoU')
    assert best == 1 and mean == [2.5, 4.0, 0.0] and len(per_fold) == 2
    assert how == 'mean hold-out mIoU over 2 image folds' and len(calls) == 3
    assert cross_validate([], scores, 3, 'mIoU') == (0, 'first lr', [None] * 3, [])


def test_the_reported_head_is_fitted_on_every_train_image():
    """The val score is the head refitted on all train samples: with folds=1 (no selection) it equals a direct
    fit of the same rates with the same generator on everything."""
    from projects.probes.dense import fit_linear_heads
    gen = torch.Generator().manual_seed(3)
    y = torch.randint(0, 3, (600,), generator=gen)
    x = _one_hot_features(y, 3, gen) + torch.randn(600, 3, generator=gen)
    yv = torch.randint(0, 3, (200,), generator=gen)
    xv = _one_hot_features(yv, 3, gen) + torch.randn(200, 3, generator=gen)
    res = train_patch_probe(x, y, torch.arange(600) // 20, xv, yv, 3, lrs=(1e-2, 1e-1), epochs=3, batch_size=64,
                            folds=1, seed=4)
    assert res['selected_by'] == 'first lr' and res['lr'] == 1e-2
    heads, standardise = fit_linear_heads(x, y, 3, torch.nn.functional.cross_entropy, (1e-2, 1e-1), 3, 64,
                                          torch.Generator().manual_seed(4), 4)
    with torch.no_grad():
        direct = [miou(confusion_matrix(h(standardise(xv)).argmax(1), yv, 3))['miou'] for h in heads]
    assert [r['val_miou'] for r in res['per_lr']] == pytest.approx(direct)


def _grid_row(name, hold, val):
    return dict(name=name, patch=dict(miou=max(val), lr=0.1, per_class_iou=[1.0],
                                      per_lr=[dict(lr=lr, holdout_miou=h, val_miou=v)
                                              for lr, h, v in zip((0.01, 0.1), hold, val)]),
                box=dict(mean_iou=30.0, iou50_rate=40.0, instances=7,
                         per_lr=[dict(lr=lr, holdout_mean_iou=h, val_mean_iou=v, val_iou50_rate=v + 1)
                                 for lr, h, v in zip((0.01, 0.1), hold, val)]))


def test_shared_lr_is_the_best_mean_hold_out_over_rows_and_rows_report_it():
    """Row a prefers 0.1 on its hold-out by a hair, row b prefers 0.01 clearly: the table's rate is 0.01 for
    both, and each row reports its val score at 0.01; a constant row (no grid) keeps its numbers."""
    a = _grid_row('a', hold=(10.0, 10.1), val=(14.0, 11.0))
    b = _grid_row('b', hold=(12.0, 11.0), val=(13.0, 12.0))
    const = dict(name='all background', patch=dict(miou=11.5), box=dict(mean_iou=27.0, iou50_rate=30.0))
    lrs = shared_lrs([a, b, const])
    assert lrs == {'patch': 0.01, 'box': 0.01}
    ra, rc = at_lrs(a, lrs), at_lrs(const, lrs)
    assert ra['patch']['miou'] == 14.0 and ra['patch']['lr'] == 0.01 and 'per_class_iou' not in ra['patch']
    assert ra['box']['mean_iou'] == 14.0 and ra['box']['iou50_rate'] == 15.0 and ra['box']['instances'] == 7
    assert a['patch']['miou'] == 14.0 and a['patch']['lr'] == 0.1  # the input row is not modified
    assert rc == const
    with pytest.raises(ValueError, match='one learning-rate grid'):
        b['patch']['per_lr'].append(dict(lr=1.0, holdout_miou=1.0, val_miou=1.0))
        shared_lrs([a, b])
    with pytest.raises(ValueError, match="row 'a' has no patch head at lr 0.5"):
        at_lrs(a, {'patch': 0.5})


def test_summarise():
    assert summarise([1.0, 3.0]) == dict(mean=2.0, std=pytest.approx(np.sqrt(2.0)), n=2)
    assert summarise([5.0, None]) == dict(mean=5.0, std=0.0, n=1)
    assert summarise([]) == dict(mean=None, std=None, n=0)


def _write_coloured_coco(root, n_train=6, n_val=3, size=64):
    """Class k is a square of colour COLOURS[k] on a grey background: raw pixels identify each patch's class."""
    colours = [(230, 30, 30), (30, 230, 30)]
    rng = np.random.default_rng(0)
    for split, n in (('train', n_train), ('val', n_val)):
        drawn = []
        for _ in range(n):
            a = np.full((size, size, 3), 128, np.uint8)
            instances = []
            for k, col in enumerate(colours):
                x0, y0 = 16 * int(rng.integers(0, 2)) + 32 * k, 16 * int(rng.integers(0, 4))
                a[y0:y0 + 16, x0:x0 + 16] = col
                instances.append(coco_instance(box_polygon(x0, y0, x0 + 16, y0 + 16), k + 1))
            drawn.append((a, instances))
        write_coco_split(root, split, drawn, [(1, 'red'), (2, 'green')], ext='png')
    return str(root)


def test_semantic_map_paints_smaller_instances_on_top(tmp_path):
    root = _write_coloured_coco(tmp_path / 'c')
    split = load_split(root, 'train')
    img = split.images[0]
    big = dict(id=99, image_id=1, category_id=1, iscrowd=0, area=4096.0, bbox=[0, 0, 64, 64],
               segmentation=[[0, 0, 64, 0, 64, 64, 0, 64]])
    img.anns = [img.anns[1], big]  # the small green square listed first, the large red one after it
    m = semantic_map(img, split.cat_to_label)
    x, y = img.anns[0]['bbox'][:2]
    assert (m[y:y + 16, x:x + 16] == 2).all() and (m == 1).sum() == 64 * 64 - 256


def test_raw_pixel_probe_on_colour_coded_patches_reaches_100(tmp_path):
    root = _write_coloured_coco(tmp_path / 'c')
    data = ProbeData(load_split(root, 'train'), load_split(root, 'val'), img_size=64, patch=16, crop_size=16)
    desc = data.describe()
    assert desc['train']['patches'] == 6 * 16 and desc['val']['instances'] == 6
    assert desc['val']['background_fraction'] == pytest.approx(14 / 16)
    mean, std = (128.0,) * 3, (64.0,) * 3
    row = probe_row(raw_pixel_encoder(16), data, mean, std, epochs=30, knn_k=3)
    assert row['patch']['miou'] == pytest.approx(100.0)
    assert row['crop_knn']['top1'] == pytest.approx(100.0) and row['feature_dims'] == 3 * 16 * 16
    background, raw = floor_rows(data, mean, std, epochs=30)
    assert background['patch']['miou'] == pytest.approx(100 * (14 / 16) / 3)
    assert background['foreground']['miou'] == pytest.approx(100 * (14 / 16) / 2)
    assert raw['foreground']['miou'] == pytest.approx(100.0)
    assert background['crop_knn']['top1'] == pytest.approx(50.0)  # both classes equally frequent
    assert raw['name'] == 'raw pixels' and raw['patch']['miou'] == pytest.approx(100.0)


def test_raw_pixel_encoder_patch_order_matches_labels():
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4).repeat(1, 1, 1, 1)
    x = torch.cat([x, x[:, :1]], 1)  # 3 channels
    feats = raw_pixel_encoder(2)(x)
    assert feats.shape == (1, 4, 12)
    # patch 1 (row 0, col 1) starts at pixel (0, 2) of channel 0
    assert feats[0, 1, 0] == x[0, 0, 0, 2] and feats[0, 2, 0] == x[0, 0, 2, 0]


def test_load_split_names_what_is_missing(tmp_path):
    with pytest.raises(CocoProbeDataError, match='instances_train.json'):
        load_split(str(tmp_path), 'train')
    root = _write_coloured_coco(tmp_path / 'c')
    (tmp_path / 'c' / 'val' / 'val_0.png').unlink()
    with pytest.raises(CocoProbeDataError, match=r"image 'val_0.png'"):
        load_split(root, 'val')
