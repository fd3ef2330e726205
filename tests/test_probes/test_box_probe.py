"""Known values of the localisation probe: targets, decode and IoU by hand, the per-instance aggregation, a feature
that encodes the answer (IoU 100), a constant feature (the constant floor, no more), and the default job's table."""
import json

import numpy as np
import pytest
import torch

from projects.probes import (
    BoxSamples,
    ProbeData,
    box_samples,
    box_scores,
    constant_box_floor,
    decode_boxes,
    encode_targets,
    instance_boxes,
    load_split,
    probe_row,
    raw_pixel_encoder,
    train_box_probe,
)
from projects.probes.box_probe import aligned_iou, patch_centres
from projects.probes.coco_patches import ProbeImage
from projects.probes.dense import floor_rows, image_folds
from tests.helpers import box_polygon, coco_instance, write_coco_split


def test_targets_decode_and_iou_by_hand():
    centre = torch.tensor([[0.375, 0.375]])
    gt = torch.tensor([[0.25, 0.25, 0.75, 0.5]])
    t = encode_targets(centre, gt)
    assert torch.allclose(t, torch.tensor([[0.125, 0.125, 0.375, 0.125]]))
    assert torch.allclose(decode_boxes(centre, t), gt)
    # (0.125 each way) -> box (0.25, 0.25, 0.5, 0.5): intersection 0.25 x 0.25 inside the 0.5 x 0.25 ground truth
    half = decode_boxes(centre, torch.full((1, 4), 0.125))
    assert torch.allclose(half, torch.tensor([[0.25, 0.25, 0.5, 0.5]]))
    assert float(aligned_iou(half, gt)) == pytest.approx(0.5)
    # a negative distance is clamped: the left edge sits on the centre, box (0.375, 0.25, 0.5, 0.5), IoU 0.03125 / 0.125
    clamped = decode_boxes(centre, torch.tensor([[-0.1, 0.125, 0.125, 0.125]]))
    assert torch.allclose(clamped, torch.tensor([[0.375, 0.25, 0.5, 0.5]]))
    assert float(aligned_iou(clamped, gt)) == pytest.approx(0.25)
    assert float(aligned_iou(torch.tensor([[0.5, 0.5, 1.0, 1.0]]), torch.tensor([[0.0, 0.0, 0.5, 0.5]]))) == 0.0


def _samples(instance, box, n_instances):
    p = len(instance)
    return BoxSamples(torch.zeros(p, dtype=torch.long), torch.arange(p), torch.tensor(instance),
                      torch.full((p, 2), 0.3), torch.tensor(box), n_instances)


def test_box_scores_average_per_instance_then_over_instances_and_median_box():
    a, b = [0.25, 0.25, 0.75, 0.5], [0.0, 0.0, 0.5, 0.5]
    # instance 7 (3 patches) listed around instance 3 (2 patches): grouping must not depend on order or numbering
    samples = _samples([7, 3, 7, 3, 7], [b, a, b, a, b], 9)
    pred = torch.tensor([[0.0, 0.0, 0.5, 0.5],      # 7: exact, IoU 1
                         [0.25, 0.25, 0.75, 0.5],   # 3: exact, IoU 1
                         [0.1, 0.1, 0.6, 0.6],      # 7: 0.16 / 0.34
                         [0.25, 0.25, 0.5, 0.5],    # 3: IoU 0.5
                         [0.5, 0.5, 1.0, 1.0]])     # 7: IoU 0
    res = box_scores(pred, samples)
    assert res['instances'] == 2
    assert res['mean_iou'] == pytest.approx(100 * ((1 + 0.5) / 2 + (1 + 0.16 / 0.34 + 0) / 3) / 2, abs=1e-4)
    # medians: instance 3 (two boxes, middle two averaged) (0.25, 0.25, 0.625, 0.5): IoU 0.75 -> counts;
    # instance 7 (0.1, 0.1, 0.6, 0.6): IoU 0.47 -> does not
    assert res['iou50_rate'] == pytest.approx(50.0)
    assert box_scores(torch.zeros(0, 4), _samples([], [], 0).subset(torch.zeros(0, dtype=torch.bool)))['mean_iou'] \
        is None


def test_instance_boxes_and_pairs_from_coco_annotations():
    img = ProbeImage('unused.png', 128, 64, [
        dict(bbox=[32, 16, 64, 16], iscrowd=0),   # -> (0.25, 0.25, 0.75, 0.5)
        dict(bbox=[0, 0, 128, 64], iscrowd=1),    # crowd: left out
        dict(bbox=[10, 10, 0, 5], iscrowd=0),     # no area: left out
        dict(bbox=[0, 0, 12, 6], iscrowd=0)])     # (0, 0, 0.094, 0.094): no patch centre of a 4 x 4 grid inside
    boxes = instance_boxes(img)
    assert np.allclose(boxes, [[0.25, 0.25, 0.75, 0.5], [0.0, 0.0, 12 / 128, 6 / 64]])
    assert torch.allclose(patch_centres(2), torch.tensor([[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]))
    s = box_samples([np.zeros((0, 4), np.float32), boxes], grid=4)
    # centres at 0.125, 0.375, 0.625, 0.875: x inside (0.25, 0.75) for columns 1, 2; y inside (0.25, 0.5) for row 1
    assert s.patch.tolist() == [5, 6] and s.img.tolist() == [1, 1] and s.instance.tolist() == [0, 0]
    assert s.num_instances == 2 and len(s) == 2
    assert torch.allclose(s.target, torch.tensor([[0.125, 0.125, 0.375, 0.125], [0.375, 0.125, 0.125, 0.125]]))
    feats = torch.arange(2 * 16 * 3, dtype=torch.float32).reshape(2, 16, 3)
    assert torch.equal(s.features(feats), feats[1, [5, 6]])


def _random_boxes(n_images, grid, gen):
    out = []
    for _ in range(n_images):
        b = []
        for _ in range(int(torch.randint(1, 3, (1,), generator=gen))):
            x0, y0 = (torch.rand(2, generator=gen) * 0.5).tolist()
            w, h = (0.2 + 0.3 * torch.rand(2, generator=gen)).tolist()
            b.append((x0, y0, x0 + w, y0 + h))
        out.append(np.asarray(b, np.float32))
    return box_samples(out, grid)


def test_features_with_patch_position_and_box_reach_iou_100():
    """Patch centre and its instance's box as the feature: the targets are linear in it, so the exact answer is
    reachable; the same probe on an uninformative feature scores far lower."""
    gen = torch.Generator().manual_seed(0)
    train, val = _random_boxes(60, 8, gen), _random_boxes(20, 8, gen)

    def feats(s):
        return torch.cat([s.centre, s.box], 1)
    res = train_box_probe(feats(train), train, feats(val), val, epochs=30, batch_size=64)
    assert res['mean_iou'] > 99.0 and res['iou50_rate'] == 100.0
    assert res['selected_by'] == 'mean hold-out mean IoU over 5 image folds' and len(res['per_lr']) == 4
    assert all(len(r['holdout_mean_iou_folds']) == 5 for r in res['per_lr'])
    assert res['instances'] == val.num_instances - res['unscored_instances'] and res['pairs']['val'] == len(val)
    noise = train_box_probe(torch.randn(len(train), 6, generator=gen), train, torch.randn(len(val), 6, generator=gen),
                            val, epochs=30, batch_size=64)
    assert noise['mean_iou'] < res['mean_iou'] - 20
    with pytest.raises(ValueError, match='patch centre inside their box'):
        train_box_probe(feats(train), train, feats(val)[:0], val.subset(torch.zeros(len(val), dtype=torch.bool)))


def test_folds_hold_out_the_patch_probes_images():
    """Given the patch probe's train images, the localisation probe deals the same images into the same folds for
    the same seed (each fold restricted to the images that have a pair)."""
    gen = torch.Generator().manual_seed(1)
    samples = _random_boxes(30, 8, gen)
    patch_img = torch.arange(30).repeat_interleave(64)
    patch_folds = image_folds(patch_img, 5, torch.Generator().manual_seed(5))
    box_folds = image_folds(samples.img, 5, torch.Generator().manual_seed(5), torch.unique(patch_img))
    assert len(patch_folds) == len(box_folds) == 5
    for p, b in zip(patch_folds, box_folds):
        held = set(patch_img[p].tolist())
        assert len(held) == 6
        assert set(samples.img[b].tolist()) == held & set(samples.img.tolist())


def _write_grid_coco(root, n_train=8, n_val=4, size=96):
    """One 48 x 48 square per image on a grey canvas, at a random position on the 16-px grid; each of its 3 x 3
    cells has its own colour, red by column and green by row, so a patch's pixels tell where in the box it is."""
    rng = np.random.default_rng(0)
    for split, n in (('train', n_train), ('val', n_val)):
        drawn = []
        for _ in range(n):
            a = np.full((size, size, 3), 128, np.uint8)
            x0, y0 = 16 * int(rng.integers(0, 4)), 16 * int(rng.integers(0, 4))
            for r in range(3):
                for c in range(3):
                    a[y0 + 16 * r:y0 + 16 * r + 16, x0 + 16 * c:x0 + 16 * c + 16] = (40 + 80 * c, 40 + 80 * r, 200)
            drawn.append((a, [coco_instance(box_polygon(x0, y0, x0 + 48, y0 + 48), 1)]))
        write_coco_split(root, split, drawn, [(1, 'square')], ext='png')
    return str(root)


def test_probe_on_grid_coded_squares_raw_pixels_exact_constant_feature_at_the_floor(tmp_path):
    root = _write_grid_coco(tmp_path / 'c')
    data = ProbeData(load_split(root, 'train'), load_split(root, 'val'), img_size=96, patch=16, crop_size=16)
    desc = data.describe()
    assert desc['val']['box_instances'] == 4 and desc['val']['box_pairs'] == 4 * 9
    mean, std = (128.0,) * 3, (64.0,) * 3
    raw = probe_row(raw_pixel_encoder(16), data, mean, std, epochs=150, knn_k=3)['box']
    assert raw['mean_iou'] > 99.0 and raw['iou50_rate'] == 100.0 and raw['unscored_instances'] == 0

    def constant(x):
        return torch.ones(x.shape[0], (x.shape[2] // 16) ** 2, 1)
    const = probe_row(constant, data, mean, std, epochs=60, knn_k=3)['box']
    floor = floor_rows(data, mean, std, epochs=2)[0]
    assert floor['name'] == 'all background'
    floor = floor['box']
    # mean targets (24, 24, 24, 24) px / 96 around each cell centre: IoU 1 at the centre cell, 1/2 at the four edge
    # cells ((8 + 24) x 48 / (2 x 48^2 - 1536)), 2/7 at the corners (32^2 / (2 x 48^2 - 32^2)); the median box of
    # every square is exact
    assert floor['targets'] == pytest.approx([0.25] * 4)
    assert floor['mean_iou'] == pytest.approx(100 * (1 + 4 * 0.5 + 4 * 2 / 7) / 9, abs=1e-3)
    assert floor['iou50_rate'] == 100.0 and floor['instances'] == 4
    assert floor['l1_optimal']['targets'] == pytest.approx([0.25] * 4)  # symmetric targets: median = mean
    assert floor['mean_iou'] - 2.0 < const['mean_iou'] <= floor['mean_iou'] + 0.1
    assert floor == constant_box_floor(data.splits['train']['box_samples'], data.splits['val']['box_samples'])


def test_default_job_table_has_localisation_columns_and_paired_differences(tmp_path):
    from projects.jobs import default_job as job
    inits = ['posfield (ours)', 'DINOv2-dagger', 'random init', 'raw pixels', 'all background']
    values = {'posfield (ours)': (40.0, 30.0), 'DINOv2-dagger': (38.0, 25.0), 'random init': (35.0, 20.0),
              'raw pixels': (30.0, 10.0), 'all background': (20.0, 5.0)}
    # the job reads each probe stage's probe.json: the first row is the stage's backbone, the rest are floors
    stages = []
    for seed in (0, 1):
        for init, name in (('posfield', 'posfield (ours)'), ('dinov2-dagger', 'DINOv2-dagger'),
                           ('random', 'random init')):
            folder = tmp_path / f'{seed}_{init}'
            folder.mkdir()
            names = [init] + (['all background', 'raw pixels'] if init == 'random' else [])
            rows = []
            for n in names:
                iou, rate = values[name if n == init else n]
                rows.append(dict(name=n, patch=dict(miou=10.0),
                                 box=dict(mean_iou=iou + seed, iou50_rate=rate + 2 * seed)))
            (folder / 'probe.json').write_text(json.dumps(dict(rows=rows)))
            stages.append(dict(kind='probe', folder=str(folder), init=init, seed=seed))
    rows, lrs = job.collect(stages, [0, 1], inits)
    assert lrs == {}  # no row has a learning-rate grid: each keeps its own numbers
    by = {(r['init'], r['seed']): r for r in rows}
    assert by[('posfield (ours)', 1)]['box_iou'] == 41.0 and by[('all background', 0)]['box_iou50'] == 5.0
    table, paired = job.aggregate(rows, inits, [0, 1])
    assert table['posfield (ours)']['box_iou']['mean'] == 40.5
    assert paired['DINOv2-dagger']['box_iou']['per_seed'] == {'0': 2.0, '1': 2.0}
    assert paired['random init']['box_iou50']['per_seed'] == {'0': 10.0, '1': 10.0}
    assert 'all background' not in paired
    summary = dict(preset='smoke', seeds=[0, 1], data=dict(description='demo'), hardware='cpu',
                   minutes_all_stages=1.0, mean_std=table, paired_differences=paired, results=rows)
    text = job.format_table(summary)
    assert 'box IoU' in text and 'box IoU>=.5' in text
    assert 'box IoU per seed: seed 0: +2.00, seed 1: +2.00' in text  # ours - DINOv2-dagger
    assert 'box IoU>=.5 per seed: seed 0: +10.00, seed 1: +10.00' in text  # ours - random init
    from projects.report.html_report import results_table
    page = results_table(summary)
    assert 'box IoU (localisation)' in page and 'box IoU ≥ 0.5 rate' in page and '40.50 ± 0.71' in page
