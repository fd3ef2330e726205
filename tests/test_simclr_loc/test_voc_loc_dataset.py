"""VOCLocalizationDataset: targets, label-fraction subsets, bad input, and boxes kept consistent by transforms."""
import numpy as np
import pytest
from mmengine.registry import DefaultScope

import projects.simclr_loc  # noqa: F401  (registers the dataset and transforms)
from projects.simclr_loc.datasets import (
    VOC_CLASSES,
    VOCAnnotationError,
    VOCLocalizationDataset,
    parse_voc_xml,
    stratified_subset,
)
from tests.test_simclr_loc.voc_fixture import DRAWN, voc_xml, write_voc


@pytest.fixture(scope='module')
def voc(tmp_path_factory):
    root = tmp_path_factory.mktemp('voc')
    records = write_voc(root, n=12)
    return root, records


def test_targets_are_the_largest_non_difficult_object(voc):
    root, records = voc
    ds = VOCLocalizationDataset(data_root=str(root), split='trainval')
    assert len(ds) == 12
    for info, rec in zip((ds.get_data_info(i) for i in range(len(ds))), records):
        assert info['img_id'] == rec['img_id']
        assert VOC_CLASSES[info['gt_label']] == rec['label_name']  # not the smaller object, not the difficult person
        x0, y0, x1, y1 = rec['box']
        np.testing.assert_array_equal(info['gt_bboxes'], [[x0 - 1, y0 - 1, x1, y1]])  # 1-based -> continuous
        np.testing.assert_array_equal(info['ori_gt_bboxes'], info['gt_bboxes'])
    assert ds.get_cat_ids(0) == [VOC_CLASSES.index(records[0]['label_name'])]
    assert any(len(ds.get_data_info(i)['instances']) == 3 for i in range(len(ds)))  # difficult ones are kept there


def test_several_sources_concatenate_and_only_difficult_images_are_left_out(voc, tmp_path):
    root, _ = voc
    other = tmp_path / 'VOC2012'
    write_voc(other, n=5, seed=1, splits=dict(trainval=range(5)))
    xml = other / 'Annotations' / '002004.xml'
    xml.write_text(voc_xml('002004.jpg', 96, 80, [dict(name='cat', box=(2, 2, 50, 50), difficult=1)]))
    ds = VOCLocalizationDataset(sources=[dict(data_root=str(root), split='train'), (str(other), 'trainval')])
    assert len(ds) == 8 + 4
    assert [ds.get_data_info(i)['source'] for i in (0, 8)] == [str(root), str(other)]
    rel = VOCLocalizationDataset(data_root=str(tmp_path), sources=[dict(data_root='VOC2012', split='trainval')])
    assert len(rel) == 4  # relative source roots are joined to data_root


def test_bad_xml_errors_name_the_file_and_field(tmp_path):
    classes = VOC_CLASSES
    bad = tmp_path / 'bad.xml'
    bad.write_text('<annotation><size><width>10</width>')
    with pytest.raises(VOCAnnotationError, match=r'bad\.xml: malformed VOC XML'):
        parse_voc_xml(str(bad), classes)
    bad.write_text(voc_xml('x.jpg', 100, 80, [dict(name='cat', box=(1, 1, 5, 5)),
                                              dict(name='unicorn', box=(1, 1, 5, 5))]))
    with pytest.raises(VOCAnnotationError, match=r"bad\.xml: object 1: field <name> is 'unicorn', not one of the 20"):
        parse_voc_xml(str(bad), classes)
    bad.write_text(voc_xml('x.jpg', 100, 80, [dict(name='dog', box=(10, 5, 120, 40))]))
    with pytest.raises(VOCAnnotationError,
                       match=r"bad\.xml: object 0 \('dog'\): field <bndbox>.*xmax=120 > image width 100"):
        parse_voc_xml(str(bad), classes)
    assert parse_voc_xml(str(bad), classes, invalid_boxes='clip')['objects'][0]['bbox'] == [9.0, 4.0, 100.0, 40.0]
    assert parse_voc_xml(str(bad), classes, invalid_boxes='skip')['objects'] == []
    bad.write_text(voc_xml('x.jpg', 100, 80, [dict(name='dog', box=(30, 5, 20, 40))]))
    with pytest.raises(VOCAnnotationError, match='xmin=30 > xmax=20'):
        parse_voc_xml(str(bad), classes)
    bad.write_text(voc_xml('x.jpg', 100, 80, [dict(name='dog', box=('abc', 5, 20, 40))]))
    with pytest.raises(VOCAnnotationError, match=r"bad\.xml: field <object 0 \('dog'\)/bndbox/xmin> is 'abc'"):
        parse_voc_xml(str(bad), classes)
    with pytest.raises(FileNotFoundError, match='missing.xml'):
        parse_voc_xml(str(tmp_path / 'missing.xml'), classes)


def test_dataset_errors_name_the_split_file_and_annotation(voc, tmp_path):
    root, _ = voc
    with pytest.raises(FileNotFoundError, match=r'ImageSets/Main/nosuch\.txt: split file not found'):
        VOCLocalizationDataset(data_root=str(root), split='nosuch')
    broken = tmp_path / 'broken'
    write_voc(broken, n=4, splits=dict(train=range(4)))
    (broken / 'Annotations' / '002002.xml').write_text('<annotation><object>')
    with pytest.raises(VOCAnnotationError, match=r'002002\.xml: malformed'):
        VOCLocalizationDataset(data_root=str(broken), split='train')
    with pytest.raises(ValueError, match='label_fraction must be in'):
        VOCLocalizationDataset(data_root=str(root), split='train', label_fraction=0.0)
    with pytest.raises(ValueError, match='data_root and split'):
        VOCLocalizationDataset(sources=[dict(root=str(root), split='train')])


def test_stratified_subset_is_deterministic_sized_and_nested():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, size=503).tolist()
    keys = [('src', f'{i:06d}') for i in range(503)]
    counts = np.bincount(labels)
    subsets = {}
    for frac in (0.01, 0.1, 0.25, 0.5, 1.0):
        kept = stratified_subset(labels, keys, frac, seed=0)
        assert kept == stratified_subset(labels, keys, frac, seed=0)  # deterministic
        assert len(kept) == sum(int(np.ceil(frac * c - 1e-9)) for c in counts)  # exact size
        assert set(np.array(labels)[kept]) == set(range(5))  # every class kept, even at 1 %
        subsets[frac] = set(kept)
    assert subsets[0.01] <= subsets[0.1] <= subsets[0.25] <= subsets[0.5] <= subsets[1.0]  # nested
    assert stratified_subset(labels, keys, 0.1, seed=1) != sorted(subsets[0.1])  # the seed matters
    # the subset depends on the keys, not on the order of the list
    perm = rng.permutation(503)
    shuffled = stratified_subset([labels[i] for i in perm], [keys[i] for i in perm], 0.1, seed=0)
    assert {keys[perm[i]] for i in shuffled} == {keys[i] for i in subsets[0.1]}
    tiny = stratified_subset([0, 1, 1, 1], ['a', 'b', 'c', 'd'], 0.07, 0)  # ceil: at least 1 per class
    assert len(tiny) == 2 and tiny[0] == 0 and tiny[1] in (1, 2, 3)


def test_dataset_label_fraction(voc):
    root, _ = voc
    ids = lambda ds: [ds.get_data_info(i)['img_id'] for i in range(len(ds))]  # noqa: E731
    half = VOCLocalizationDataset(data_root=str(root), split='trainval', label_fraction=0.5, subset_seed=3)
    assert len(half) == 6  # 4 images of each of 3 classes -> 2 each
    again = VOCLocalizationDataset(data_root=str(root), split='trainval', label_fraction=0.5, subset_seed=3)
    assert ids(half) == ids(again)
    quarter = VOCLocalizationDataset(data_root=str(root), split='trainval', label_fraction=0.25, subset_seed=3)
    assert len(quarter) == 3 and set(ids(quarter)) <= set(ids(half))
    assert sorted(np.bincount([half.get_data_info(i)['gt_label'] for i in range(6)], minlength=20)[
        [VOC_CLASSES.index(n) for n, _ in DRAWN]]) == [2, 2, 2]


def _object_extent(img, colour, tol=40):
    """Pixel bounding box (x0, y0, x1, y1), continuous, of the pixels close to ``colour`` (RGB) in a BGR image."""
    mask = (np.abs(img[..., ::-1].astype(int) - np.array(colour)).max(-1) < tol)
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=float)


@pytest.mark.parametrize('steps', [
    ['resize'], ['flip'], ['crop'], ['crop', 'resize', 'flip'],
])
def test_transforms_keep_the_box_on_the_object(voc, steps):
    root, records = voc
    transforms = dict(
        resize=dict(type='Resize', scale=(61, 47), keep_ratio=False),
        flip=dict(type='RandomFlip', prob=1.0, direction='horizontal'),
        crop=dict(type='BoxPreservingRandomCrop', min_scale=0.5, prob=1.0))
    pipeline = [dict(type='LoadImageFromFile')] + [transforms[s] for s in steps]
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        ds = VOCLocalizationDataset(data_root=str(root), split='trainval', pipeline=pipeline)
        np.random.seed(0)
        for i in range(6):
            out = ds[i]
            colour = dict(DRAWN)[records[i]['label_name']]
            box = out['gt_bboxes'][0]
            extent = _object_extent(out['img'], colour)
            np.testing.assert_allclose(box, extent, atol=1.6)  # JPEG + interpolation blur the border
            assert out['img'].shape[:2] == tuple(out['img_shape'])
            # the original-frame target never moves
            x0, y0, x1, y1 = records[i]['box']
            np.testing.assert_array_equal(out['ori_gt_bboxes'], [[x0 - 1, y0 - 1, x1, y1]])
