"""The offline VOC-layout localisation set (projects/demo_data/voc_loc.py) on fake package data, read back by
VOCLocalizationDataset: one object per image, boxes exactly as written, splits from disjoint sources."""
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from projects.demo_data.sources import DemoDataError
from projects.demo_data.voc_loc import DEEPFOREST, TREE_TILES, build_voc_loc, continuous_to_voc, isolated_tree_crops
from tests.test_simclr_loc.voc_fixture import voc_xml


def fake_demo_root(root, n_photos=6):
    """A demo data folder as prepare_demo_data.py leaves it, with n random photos in two groups."""
    rng = np.random.default_rng(0)
    (root / 'photos').mkdir(parents=True)
    records = []
    for i in range(n_photos):
        Image.fromarray((rng.random((90, 120, 3)) * 255).astype(np.uint8)).save(root / 'photos' / f'p{i}.jpg')
        records.append(dict(file=f'p{i}.jpg', kind='photo', group='val' if i < 2 else f'g{i}'))
    (root / 'photos' / 'manifest.json').write_text(json.dumps(dict(images=records)))
    (root / 'manifest.json').write_text(json.dumps(dict(args=dict(pool=dict(version=1)),
                                                        backgrounds=dict(val_groups=['val']))))
    return str(root)


def fake_deepforest_wheel(path):
    """Three tiles, each with isolated 20 px trees on a 10 x 10 grid of 60 px cells (and one touching pair)."""
    with zipfile.ZipFile(path, 'w') as zf:
        for stem, _ in TREE_TILES:
            img = np.full((600, 600, 3), 60, np.uint8)
            objects = []
            for k in range(100):
                x0, y0 = 20 + 60 * (k % 10), 20 + 60 * (k // 10)
                img[y0:y0 + 20, x0:x0 + 20] = (40, 160, 40)
                objects.append(dict(name='Tree', box=(x0 + 1, y0 + 1, x0 + 20, y0 + 20)))
            objects.append(dict(name='Tree', box=(22, 22, 41, 41)))  # overlaps the first tree: never isolated
            buf = Image.fromarray(img)
            with zf.open(f'deepforest/data/{stem}.png', 'w') as f:
                buf.save(f, format='PNG')
            zf.writestr(f'deepforest/data/{stem}.xml', voc_xml(f'{stem}.tif', 600, 600, objects))
    return str(path)


@pytest.fixture(scope='module')
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('vocloc')
    demo = fake_demo_root(tmp / 'demo')
    wheel = fake_deepforest_wheel(tmp / 'deepforest-2.1.0-py3-none-any.whl')
    out = tmp / 'voc'
    manifest = build_voc_loc(str(out), demo, per_class_train=5, per_class_test=3, image_size=64,
                             downloader=lambda source, cache: wheel, use_installed=False, log=lambda m: None)
    return out, demo, wheel, manifest


def test_reader_takes_it_unchanged_with_exact_boxes(built):
    out, _, _, manifest = built
    from projects.simclr_loc.datasets import VOCLocalizationDataset
    classes = manifest['classes']
    assert classes[0] == 'tree' and len(classes) == 7
    for split, per_class in (('trainval', 5), ('test', 3)):
        ds = VOCLocalizationDataset(data_root=str(out), split=split, classes=classes, lazy_init=False)
        assert len(ds) == per_class * len(classes)
        labels = [ds.get_data_info(i)['gt_label'] for i in range(len(ds))]
        assert np.bincount(labels).tolist() == [per_class] * len(classes)
        by_id = {r['id']: r for r in manifest['images']}
        for i in range(len(ds)):
            info = ds.get_data_info(i)
            assert len(info['instances']) == 1  # one labelled object per image
            rec = by_id[info['img_id']]
            x0, y0, x1, y1 = rec['box']
            np.testing.assert_array_equal(info['gt_bboxes'][0], [x0 - 1, y0 - 1, x1, y1])
            assert Image.open(info['img_path']).size == (64, 64)
            assert rec['kind'] == ('real' if rec['class'] == 'tree' else 'synthetic')


def test_tree_crops_are_isolated_and_splits_use_other_tiles(built):
    out, _, _, manifest = built
    trees = [r for r in manifest['images'] if r['class'] == 'tree']
    test_tile = [s for s, split in TREE_TILES if split == 'test'][0]
    for r in trees:
        assert (test_tile in r['origin']) == (r['split'] == 'test')
        assert r['tree_index'] not in (0, 100)  # the touching pair is never a one-object crop
        # the green tree fills the box: inside mostly green, the box is 20 px of the 600 px tile scaled to 64 px
        img = np.asarray(Image.open(out / 'JPEGImages' / f'{r["id"]}.jpg')).astype(int)
        x0, y0, x1, y1 = r['box']
        inside = img[y0:y1 - 1, x0:x1 - 1]
        assert inside[..., 1].mean() > 120 and inside[..., 0].mean() < 80
    # composed shapes: test backgrounds only from the val group's photos
    for r in manifest['images']:
        if r['kind'] == 'synthetic':
            assert (r['origin'] in ('photos/p0.jpg', 'photos/p1.jpg')) == (r['split'] == 'test')


def test_rebuild_is_skipped_and_bad_arguments_are_named(built, tmp_path):
    out, demo, wheel, manifest = built
    before = (out / 'manifest.json').stat().st_mtime_ns
    logs = []
    again = build_voc_loc(str(out), demo, per_class_train=5, per_class_test=3, image_size=64,
                          downloader=lambda source, cache: wheel, use_installed=False, log=logs.append)
    assert again == manifest and (out / 'manifest.json').stat().st_mtime_ns == before and 'up to date' in logs[0]
    with pytest.raises(DemoDataError, match='manifest.json not found: build the demo data first'):
        build_voc_loc(str(tmp_path / 'v'), str(tmp_path / 'nothing'))
    with pytest.raises(DemoDataError, match='only .* isolated trees for trainval'):
        build_voc_loc(str(tmp_path / 'v'), demo, per_class_train=500, downloader=lambda s, c: wheel,
                      use_installed=False, log=lambda m: None)
    assert DEEPFOREST.package == 'deepforest'


def test_isolation_rule_and_voc_rounding():
    boxes = np.array([[10., 10., 30., 30.], [32., 10., 52., 30.], [200., 200., 220., 220.]])
    rng = np.random.default_rng(0)
    crops = dict(isolated_tree_crops(boxes, 400, 400, rng, tree_fill=(0.5, 0.5), max_neighbour_cover=0.25, tries=50))
    assert 2 in crops and (crops[2][2] - crops[2][0]) == pytest.approx(40.0)  # side = 20 px / 0.5
    c = crops[2]
    assert c[0] <= 200 and c[2] >= 220 and c[1] <= 200 and c[3] >= 220  # the tree lies inside its crop
    assert 0 not in crops  # box 1 is 2 px to its right: every 40 px crop inside the image holds >= 40 % of it
    for i, c in crops.items():  # whatever was kept holds at most 25 % of any other box
        for j, o in enumerate(boxes):
            if j != i:
                inter = max(0, min(c[2], o[2]) - max(c[0], o[0])) * max(0, min(c[3], o[3]) - max(c[1], o[1]))
                assert inter <= 0.25 * 400
    assert continuous_to_voc([0.0, 0.0, 64.0, 64.0], 64, 64) == (1, 1, 64, 64)
    assert continuous_to_voc([2.3, 4.0, 10.2, 11.0], 64, 64) == (3, 5, 11, 11)
