"""compose_coco: deterministic, COCO-valid, exact masks, every painted object annotated."""
import json
import os.path as osp

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from projects.demo_data import (
    CLASSES,
    DemoDataError,
    compose_coco,
    compose_image,
    has_hole,
    mask_to_polygons,
    roundtrip_iou,
    verify_coco,
)

MIN_AREA = 48


def _compose(bgs, out, seed, n=6, split='train', **kw):
    return compose_coco(bgs, str(out), seed=seed, num_images=n, split=split, image_size=96, min_area=MIN_AREA,
                        progress=False, **kw)


def test_deterministic(backgrounds, tmp_path):
    a = _compose(backgrounds, tmp_path / 'a', seed=1)
    b = _compose(list(reversed(backgrounds)), tmp_path / 'b', seed=1)  # input order does not matter
    c = _compose(backgrounds, tmp_path / 'c', seed=2)
    assert a['sha256'] == b['sha256']
    assert a['sha256'] != c['sha256']
    img_a = np.asarray(Image.open(osp.join(a['img_dir'], 'train_000003.jpg')))
    img_b = np.asarray(Image.open(osp.join(b['img_dir'], 'train_000003.jpg')))
    assert (img_a == img_b).all()
    # the split name is part of the stream: same seed, other split -> other content
    d = _compose(backgrounds, tmp_path / 'd', seed=1, split='val')
    assert json.load(open(d['ann_file']))['annotations'] != json.load(open(a['ann_file']))['annotations']


def test_coco_file_is_valid_and_exact(backgrounds, tmp_path):
    s = _compose(backgrounds, tmp_path / 'out', seed=0, n=10)
    with open(s['ann_file']) as f:
        raw = json.load(f)
    assert [c['name'] for c in raw['categories']] == list(CLASSES)
    assert [c['id'] for c in raw['categories']] == list(range(1, len(CLASSES) + 1))
    coco = COCO(s['ann_file'])
    assert len(coco.imgs) == 10 and len(coco.anns) == s['num_instances'] >= 10
    for ann in coco.anns.values():
        m = coco.annToMask(ann).astype(bool)
        x, y, w, h = ann['bbox']
        ys, xs = np.nonzero(m)
        assert xs.min() >= x and ys.min() >= y and xs.max() < x + w and ys.max() < y + h  # inside the box
        tight = (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        assert np.abs(np.array(tight) - np.array(ann['bbox'])).max() <= 1
        assert abs(int(m.sum()) - ann['area']) <= 0.02 * ann['area']
        assert ann['area'] >= MIN_AREA and ann['iscrowd'] == 0
        assert all(len(p) % 2 == 0 and len(p) >= 6 for p in ann['segmentation'])
    for img in coco.imgs.values():
        assert Image.open(osp.join(s['img_dir'], img['file_name'])).size == (96, 96)
        assert img['background'] in {osp.basename(p) for p in backgrounds}
    stats = verify_coco(s['ann_file'], s['img_dir'], min_area=MIN_AREA)
    assert stats['max_box_error_px'] == 0 and stats['max_area_error'] == 0


def test_every_painted_object_is_annotated_and_masks_are_visible_parts():
    flat = np.full((200, 200, 3), 128, np.uint8)  # a uniform background shows every painted pixel
    fringe = np.ones((5, 5), np.uint8)  # anti-aliased edges reach at most a pixel beyond the mask
    for i in range(8):
        img, objects, _ = compose_image(flat, np.random.default_rng([5, i]), 96, CLASSES, None, (3, 7),
                                        min_area=MIN_AREA)
        assert objects
        masks = np.stack([m for _, m in objects])
        assert (masks.sum(0) <= 1).all(), 'visible masks overlap: occluded parts were not removed'
        near = cv2.dilate(masks.any(0).astype(np.uint8), fringe).astype(bool)
        bg = np.median(img[~near], axis=0)
        painted = np.abs(img.astype(float) - bg).max(-1) > 12
        assert not (painted & ~near).any(), 'something was painted that no annotation covers'
        for _, m in objects:
            assert m.sum() >= MIN_AREA and not has_hole(m)
            assert painted[m].mean() > 0.5  # an annotated object is really there


def test_bad_input(backgrounds, tmp_path):
    with pytest.raises(DemoDataError, match='background list is empty'):
        compose_coco([], str(tmp_path), num_images=1, progress=False)
    with pytest.raises(DemoDataError, match='not found'):
        compose_coco([str(tmp_path / 'nope.jpg')], str(tmp_path), num_images=1, progress=False)
    with pytest.raises(DemoDataError, match='unknown class'):
        compose_coco(backgrounds, str(tmp_path), num_images=1, classes=('ellipse', 'ring'), progress=False)
    broken = tmp_path / 'broken.jpg'
    broken.write_bytes(b'not a jpeg')
    with pytest.raises(DemoDataError, match='broken.jpg'):
        compose_coco([str(broken)], str(tmp_path / 'o'), num_images=1, progress=False)


def test_mmdet_coco_dataset_reads_it(backgrounds, tmp_path):
    """The files load in mmdet's CocoDataset + LoadAnnotations, with bitmap and with polygon masks."""
    pytest.importorskip('mmdet')
    from mmdet.datasets import CocoDataset
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    s = _compose(backgrounds, tmp_path / 'out', seed=0, n=3)
    for poly2mask in (True, False):
        ds = CocoDataset(
            data_root=str(tmp_path / 'out'), ann_file='annotations/instances_train.json',
            data_prefix=dict(img='train/'), metainfo=dict(classes=CLASSES),
            pipeline=[dict(type='LoadImageFromFile'),
                      dict(type='LoadAnnotations', with_bbox=True, with_mask=True, poly2mask=poly2mask)])
        n = 0
        for i in range(len(ds)):
            out = ds[i]
            assert not out['gt_ignore_flags'].any()
            assert len(out['gt_masks']) == len(out['gt_bboxes']) == len(out['gt_bboxes_labels'])
            n += len(out['gt_masks'])
        assert n == s['num_instances']


def test_dense_scenes_stay_exactly_representable():
    """Crowded scenes (many overlapping objects, big and small) never produce a visible mask that COCO
    polygons cannot hold (a hole punched by an object lying inside another): the round trip is exact."""
    photo = np.full((120, 120, 3), 90, np.uint8)
    n_objects = 0
    for i in range(20):
        _, objects, _ = compose_image(photo, np.random.default_rng([9, i]), 96, CLASSES, None, (8, 10),
                                      scale_range=(0.04, 0.4), min_area=16, min_visible=0.1)
        for _, m in objects:
            assert not has_hole(m)
            assert roundtrip_iou(mask_to_polygons(m), m) == 1.0
        n_objects += len(objects)
    assert n_objects >= 100
