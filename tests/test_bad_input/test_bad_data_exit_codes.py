"""Broken COCO and VOC-XML data through the user-facing tool: ``tools/train.py`` run as a process exits with
status 1 and a one-line message naming the file and the problem, before any training step (docs/reliability.md).
The other tests of this folder check the same messages inside the test process."""
import json
import os.path as osp

import pytest

from tests.helpers import ROOT, write_coco
from tests.test_bad_input.helpers import run_tool
from tests.test_simclr_loc.voc_fixture import voc_xml, write_voc

TINY_DET = osp.join(ROOT, 'configs/mask_rcnn/mask-rcnn_vit-tiny-p16-posfield_cpu-smoke_coco-format.py')
TINY_LOC = osp.join(ROOT, 'configs/localization/clsloc_efficientnet-b0_1xb4-6iter_cpu-tiny.py')


def _train(config, work_dir, options):
    return run_tool(['tools/train.py', config, '--work-dir', str(work_dir), '--cfg-options', 'train_cfg.max_iters=1']
                    + options)


def _assert_refused(rc, log, work_dir, message):
    assert rc == 1, log[-3000:]
    assert f'train.py: error: {message}' in log, log[-3000:]
    assert 'Traceback' not in log and not list(work_dir.glob('*.pth'))


# ----- COCO --------------------------------------------------------------------------------------------------------

@pytest.fixture
def coco(tmp_path):
    root = write_coco(tmp_path / 'coco', n_train=2, n_val=1, size=64)
    path = osp.join(root, 'annotations', 'instances_train.json')
    with open(path) as f:
        return root, path, json.load(f)


def _train_det(root, work_dir):
    return _train(TINY_DET, work_dir, [f'train_dataloader.dataset.data_root={root}/',
                                       f'val_dataloader.dataset.data_root={root}/',
                                       f'val_evaluator.ann_file={root}/annotations/instances_val.json'])


def test_train_tool_on_coco_with_empty_annotations(coco, tmp_path):
    root, path, data = coco
    data['annotations'] = []
    with open(path, 'w') as f:
        json.dump(data, f)
    rc, log = _train_det(root, tmp_path / 'wd')
    _assert_refused(rc, log, tmp_path / 'wd', f'{path}: "annotations" is empty or not a list: nothing to train')


def test_train_tool_on_coco_categories_differing_from_the_config_by_case(coco, tmp_path):
    root, path, data = coco
    for cat in data['categories']:
        cat['name'] = cat['name'].capitalize()  # the config says 'ellipse', 'rectangle', 'triangle'
    with open(path, 'w') as f:
        json.dump(data, f)
    rc, log = _train_det(root, tmp_path / 'wd')
    _assert_refused(rc, log, tmp_path / 'wd', f"{path}: config classes not among the file's categories: "
                    "'ellipse', 'rectangle', 'triangle' (they differ only by case: 'ellipse' vs 'Ellipse'")


# ----- VOC XML -----------------------------------------------------------------------------------------------------

@pytest.fixture
def voc(tmp_path):
    root = tmp_path / 'voc'
    records = write_voc(root, n=6, splits=dict(train=[0, 1, 2, 3], val=[4, 5]))
    return root, records


def _train_loc(root, work_dir):
    return _train(TINY_LOC, work_dir, [f'{k}.dataset.data_root={root}'
                                       for k in ('train_dataloader', 'val_dataloader', 'test_dataloader')])


def test_train_tool_on_malformed_voc_xml(voc, tmp_path):
    root, records = voc
    xml = root / 'Annotations' / f'{records[1]["img_id"]}.xml'
    xml.write_text(xml.read_text()[:-40])  # cut off: no closing tags
    rc, log = _train_loc(root, tmp_path / 'wd')
    _assert_refused(rc, log, tmp_path / 'wd', f'{xml}: malformed VOC XML')


def test_train_tool_on_voc_box_outside_the_image(voc, tmp_path):
    root, records = voc
    xml = root / 'Annotations' / f'{records[2]["img_id"]}.xml'
    xml.write_text(voc_xml(f'{records[2]["img_id"]}.jpg', 96, 80, [dict(name=records[2]['label_name'],
                                                                         box=(10, 10, 120, 40))]))
    rc, log = _train_loc(root, tmp_path / 'wd')
    _assert_refused(rc, log, tmp_path / 'wd', f"{xml}: object 0 ('{records[2]['label_name']}'): field <bndbox> is "
                    'outside the image or inverted (xmax=120 > image width 96)')


def test_train_tool_on_coco_image_sizes_that_are_not_the_files_sizes_with_strict(coco, tmp_path):
    root, path, data = coco
    for img in data['images']:
        img.update(width=640, height=480)  # the files are 64 x 64
    with open(path, 'w') as f:
        json.dump(data, f)
    rc, log = _train(TINY_DET, tmp_path / 'wd', [f'train_dataloader.dataset.data_root={root}/',
                                                 f'val_dataloader.dataset.data_root={root}/',
                                                 f'val_evaluator.ann_file={root}/annotations/instances_val.json',
                                                 'train_dataloader.dataset.strict=True'])
    _assert_refused(rc, log, tmp_path / 'wd', f'{root}/train/')
    assert f': the image is 64x64 px, but {root}/annotations/instances_train.json gives width=640, height=480; ' \
           'its boxes and masks would be placed for the wrong size (strict=True)' in log

