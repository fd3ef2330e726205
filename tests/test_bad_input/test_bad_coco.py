"""Broken COCO annotation files: every problem is named at load time, with the file."""
import json
import os.path as osp

import numpy as np
import pytest
import torch

from projects.common.coco_checks import CocoFormatError, check_coco, read_coco_json
from tests.helpers import ROOT, write_coco
from tests.helpers import SHAPE_CLASSES as CLASSES
from tests.test_bad_input.helpers import LogCapture, run_tool_in_process

TINY_DET = osp.join(ROOT, 'configs/mask_rcnn/mask-rcnn_vit-tiny-p16-posfield_cpu-smoke_coco-format.py')


@pytest.fixture
def coco(tmp_path):
    root = write_coco(tmp_path / 'coco', n_train=4, n_val=2)
    path = osp.join(root, 'annotations', 'instances_train.json')
    with open(path) as f:
        return root, path, json.load(f)  # 4 images x 2 annotations, ids 1..8


def _write(root, name, data):
    path = osp.join(root, 'annotations', name)
    with open(path, 'w') as f:
        f.write(data if isinstance(data, str) else json.dumps(data))
    return path


def test_invalid_json_names_file_line_and_column(coco):
    root, _, _ = coco
    path = _write(root, 'broken.json', '{"images": [\n  {"id": 1,}\n]}')
    with pytest.raises(CocoFormatError, match=r'broken\.json: invalid JSON at line 2, column 12'):
        read_coco_json(path)


@pytest.mark.parametrize('edit, reason', [
    (lambda d: d['annotations'][0].update(image_id=999), 'image_id not in "images"'),
    (lambda d: d['annotations'][0].update(bbox=[10, 10, 0, 5]), 'bbox width or height <= 0'),
    (lambda d: d['annotations'][0].update(bbox=[10, 10, 5, -3]), 'bbox width or height <= 0'),
    (lambda d: d['annotations'][0].update(category_id=42), 'category_id not in "categories"'),
    (lambda d: d['annotations'][0].update(bbox=[500, 500, 10, 10]), 'bbox entirely outside its image'),
    (lambda d: d['annotations'][0].update(segmentation=[[10, 10, 20, 20]]), 'polygon with fewer than 3 points'),
])
def test_each_dropped_annotation_is_counted_with_its_id_and_reason(coco, edit, reason):
    _, path, data = coco
    edit(data)
    cleaned, report = check_coco(data, path, classes=CLASSES)
    assert report.startswith(f'{path}: dropped 1 of 8 annotations: 1 with {reason} (ids 1)')
    assert [a['id'] for a in cleaned['annotations']] == list(range(2, 9))
    with pytest.raises(CocoFormatError, match=r'strict=True and 1 of 8 annotations are unusable: 1 with '):
        check_coco(data, path, classes=CLASSES, strict=True)


def test_one_report_per_file_with_counts_per_reason(coco):
    _, path, data = coco
    for i in (0, 2, 4):
        data['annotations'][i]['image_id'] = 77
    data['annotations'][1]['category_id'] = 9
    _, report = check_coco(data, path, classes=CLASSES)
    assert report.count(path) == 1
    assert 'dropped 4 of 8 annotations: 3 with image_id not in "images" (ids 1, 3, 5); 1 with category_id not ' \
           'in "categories" (ids 2)' in report


@pytest.mark.parametrize('edit, message', [
    (lambda d: d.update(annotations=[]), r'"annotations" is empty or not a list: nothing to train'),
    (lambda d: d.pop('images'), r'no "images" key \(keys: annotations, categories\)'),
    (lambda d: d.pop('categories'), r'no "categories" key'),
    (lambda d: d['images'][1].pop('width'), r'images\[1\] has no width'),
    (lambda d: d['annotations'][3].update(id=1), r'annotation id 1 appears twice'),
])
def test_unusable_files_raise_naming_file_and_problem(coco, edit, message):
    _, path, data = coco
    edit(data)
    with pytest.raises(CocoFormatError, match=f'^{path}: {message}'):
        check_coco(data, path, classes=CLASSES)


def test_class_names_differing_only_by_case_list_both_sides(coco):
    _, path, data = coco
    with pytest.raises(CocoFormatError) as err:
        check_coco(data, path, classes=('Ellipse', 'rectangle', 'Triangle'))
    msg = str(err.value)
    assert msg.startswith(f"{path}: config classes not among the file's categories: 'Ellipse', 'Triangle' (they "
                          "differ only by case: 'Ellipse' vs 'ellipse', 'Triangle' vs 'triangle')")
    assert "config classes: 'Ellipse', 'rectangle', 'Triangle'" in msg
    assert "file categories: 'ellipse', 'rectangle', 'triangle'" in msg


def _dataset(root, ann, pipeline=(), **kw):
    from mmdet.registry import DATASETS
    from mmengine.registry import init_default_scope

    import projects.common.coco  # noqa: F401
    init_default_scope('mmdet')
    return DATASETS.build(dict(type='CheckedCocoDataset', data_root=root, ann_file=ann, data_prefix=dict(img='train/'),
                               metainfo=dict(classes=CLASSES), pipeline=list(pipeline),
                               filter_cfg=dict(filter_empty_gt=True, min_size=4), **kw))


def test_dataset_warns_once_and_keeps_the_rest(coco, caplog):
    root, _, data = coco
    data['annotations'][0]['bbox'] = [1, 1, 0, 0]
    data['annotations'][5]['segmentation'] = [[1, 2]]
    path = _write(root, 'edited.json', data)
    log = LogCapture(caplog)
    ds = _dataset(root, path)
    [msg] = [m for m in log.warnings if 'dropped' in m]
    assert msg.startswith(f'{path}: dropped 2 of 8 annotations')
    assert len(ds) == 4  # mmdet's empty-image filter sees the checked annotations (every image keeps one)
    assert sum(len(ds.get_data_info(i)['instances']) for i in range(len(ds))) == 6
    with pytest.raises(CocoFormatError, match='strict=True'):
        _dataset(root, path, strict=True)


def test_empty_annotations_fail_at_dataset_build_naming_the_file(coco):
    root, _, data = coco
    data['annotations'] = []
    path = _write(root, 'empty.json', data)
    with pytest.raises(CocoFormatError, match=r'empty\.json: "annotations" is empty'):
        _dataset(root, path)


def test_short_polygon_in_ground_truth_no_longer_crashes_evaluation(coco):
    """pycocotools turns a 2-point polygon into a crash in COCOeval; the checked metric drops it at load."""
    from pycocotools import mask as mask_utils

    from projects.common.coco import CheckedCocoMetric
    root, _, _ = coco
    with open(osp.join(root, 'annotations', 'instances_val.json')) as f:
        data = json.load(f)
    data['annotations'][0]['segmentation'] = [[5, 5, 9, 9]]
    path = _write(root, 'val_short_polygon.json', data)
    metric = CheckedCocoMetric(ann_file=path, metric=['bbox', 'segm'])
    metric.dataset_meta = dict(classes=CLASSES)
    scores = iter(np.linspace(1.0, 0.5, len(data['annotations'])).tolist())  # distinct: ties lower COCO AP
    for img in data['images']:
        anns = [a for a in data['annotations'][1:] if a['image_id'] == img['id']]
        masks = [mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(a['segmentation'], img['height'],
                                                                           img['width']))).astype(bool)
                 for a in anns]
        pred = dict(bboxes=torch.tensor([[a['bbox'][0], a['bbox'][1], a['bbox'][0] + a['bbox'][2],
                                          a['bbox'][1] + a['bbox'][3]] for a in anns], dtype=torch.float32),
                    scores=torch.tensor([next(scores) for _ in anns]),
                    labels=torch.tensor([a['category_id'] - 1 for a in anns]),
                    masks=torch.from_numpy(np.stack(masks)))
        metric.process({}, [dict(img_id=img['id'], ori_shape=(img['height'], img['width']), pred_instances=pred)])
    results = metric.evaluate(len(data['images']))
    assert results['coco/segm_mAP'] == pytest.approx(1.0)  # the dropped annotation is not counted as missed


def test_train_tool_on_invalid_json_exits_naming_file_line_and_column(coco, tmp_path):
    root, _, _ = coco
    path = _write(root, 'instances_train.json', '{"images": [], "annotations": [}')
    rc, log = run_tool_in_process('train', [TINY_DET, '--work-dir', str(tmp_path / 'wd'), '--cfg-options',
                                            f'train_dataloader.dataset.data_root={root}/',
                                            f'val_dataloader.dataset.data_root={root}/',
                                            f'val_evaluator.ann_file={root}/annotations/instances_val.json'])
    assert rc == 1, log[-3000:]
    assert f'{path}: invalid JSON at line 1, column 32: Expecting value' in log
    assert 'Traceback' not in log


# ----- image sizes in "images" that are not the files' sizes -------------------------------------------------------

def _sized_dataset(root, path, **kw):
    return _dataset(root, path, **kw, pipeline=[dict(type='LoadImageFromFile'),
                                                 dict(type='LoadAnnotations', with_bbox=True, with_mask=True)])


def _resize_images_in_json(root, data, n):
    for img in data['images'][:n]:
        img.update(width=640, height=480)  # the files are 128 x 128
    return _write(root, 'resized.json', data)


def test_image_size_mismatch_is_warned_once_per_file_when_the_image_loads(coco, caplog):
    root, _, data = coco
    path = _resize_images_in_json(root, data, 2)
    ds = _sized_dataset(root, path)
    names = [type(t).__name__ for t in ds.pipeline.transforms]
    assert names == ['LoadImageFromFile', 'CheckImageSize', 'LoadAnnotations']  # right after the image is read
    log = LogCapture(caplog)
    for _ in range(2):  # two epochs: one warning per file
        for i in range(len(ds)):
            assert ds[i]['img'].shape == (128, 128, 3)
    sizes = [m for m in log.warnings if 'the image is' in m]
    first, second = (osp.join(root, 'train', data['images'][i]['file_name']) for i in (0, 1))
    assert sizes == [
        f'{first}: the image is 128x128 px, but {path} gives width=640, height=480; its boxes and masks would be '
        'placed for the wrong size (1 such file(s) so far; not repeated for this file)',
        f'{second}: the image is 128x128 px, but {path} gives width=640, height=480; its boxes and masks would be '
        'placed for the wrong size (2 such file(s) so far; not repeated for this file)']


def test_image_size_mismatch_is_an_error_with_strict(coco):
    from projects.common.coco import ImageSizeMismatchError
    root, _, data = coco
    path = _resize_images_in_json(root, data, 1)
    ds = _sized_dataset(root, path, strict=True)
    image = osp.join(root, 'train', data['images'][0]['file_name'])
    with pytest.raises(ImageSizeMismatchError) as err:
        ds[0]
    assert str(err.value) == (f'{image}: the image is 128x128 px, but {path} gives width=640, height=480; its boxes '
                              'and masks would be placed for the wrong size (strict=True)')
    assert ds[1]['img'].shape == (128, 128, 3)  # images of the right size load


def test_matching_sizes_are_silent_and_the_check_can_be_left_out(coco, caplog):
    root, path, data = coco
    log = LogCapture(caplog)
    ds = _sized_dataset(root, path)
    assert all(ds[i]['img'].shape == (128, 128, 3) for i in range(len(ds)))
    assert not [m for m in log.warnings if 'the image is' in m]
    bad = _resize_images_in_json(root, data, 1)
    unchecked = _sized_dataset(root, bad, check_image_size=False, strict=True)
    assert 'CheckImageSize' not in [type(t).__name__ for t in unchecked.pipeline.transforms]
    assert unchecked[0]['img'].shape == (128, 128, 3)
