"""The localisation job scores hand-made boxes to hand-computed values.

A VOC folder with three 128 x 128 test images and boxes chosen by hand, and a fine-tuned checkpoint put where the
job looks for it, rigged so that every image gets class ``cat`` (scores cat > dog > car) and the normalised box
(cx, cy, w, h) = (0.5, 0.5, 0.5, 0.5): xyxy (32, 32, 96, 96) in original pixels after the job's 96 px test
resize is undone. The job then runs only its evaluation (``tools/test.py``), Grad-CAM and the summary; the
table must hold exactly what the boxes give:

| image | class | ground truth (xyxy) | IoU with (32, 32, 96, 96) |
|---|---|---|---|
| 0 | cat | (32, 32, 96, 96) | 1 |
| 1 | dog | (0, 0, 64, 64) | 32^2 / (2 * 64^2 - 32^2) = 1/7 |
| 2 | car | (32, 32, 96, 128) | 64^2 / (64 * 96) = 2/3 |

top-1 1/3 (only image 0 is a cat), top-3 1, mean IoU (1 + 1/7 + 2/3) / 3, Acc@IoU0.5 2/3, Acc@IoU0.7 1/3
(localisation is scored class-agnostic, ``LocalizationMetric(class_aware=False)``, the config's default).
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import ROOT, write_images
from tests.test_simclr_loc.voc_fixture import voc_xml

CLASSES = ('car', 'cat', 'dog')  # sorted: the order the job reads a VOC folder without a manifest in
TEST = [('cat', (32, 32, 96, 96)), ('dog', (0, 0, 64, 64)), ('car', (32, 32, 96, 128))]
SIZE = 128


def write_hand_made_voc(root):
    for sub in ('JPEGImages', 'Annotations', 'ImageSets/Main'):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ids = []
    for i, (name, (x1, y1, x2, y2)) in enumerate(TEST):
        img_id = f'{3000 + i:06d}'
        Image.fromarray((rng.random((SIZE, SIZE, 3)) * 255).astype(np.uint8)).save(root / 'JPEGImages' /
                                                                                    f'{img_id}.jpg')
        # VOC is 1-based inclusive: continuous (x1, y1, x2, y2) is written as (x1 + 1, y1 + 1, x2, y2)
        (root / 'Annotations' / f'{img_id}.xml').write_text(
            voc_xml(f'{img_id}.jpg', SIZE, SIZE, [dict(name=name, box=(x1 + 1, y1 + 1, x2, y2))]))
        ids.append(img_id)
    for split in ('trainval', 'test'):
        (root / 'ImageSets' / 'Main' / f'{split}.txt').write_text(''.join(i + '\n' for i in ids))


def write_rigged_checkpoint(path):
    from mmengine.config import Config
    from mmpretrain.registry import MODELS

    import projects.simclr_loc  # noqa: F401  (registers the model)
    from projects.jobs.localization_job import LOC_CFGS
    cfg = Config.fromfile(os.path.join(ROOT, LOC_CFGS['random']))
    cfg.model.head.num_classes = len(CLASSES)
    cfg.model.data_preprocessor.num_classes = len(CLASSES)
    model = MODELS.build(cfg.model)
    head = model.head
    with torch.no_grad():
        head.fc_cls.weight.zero_()
        head.fc_cls.bias.copy_(torch.tensor([0.0, 2.0, 1.0]))  # car, cat, dog: cat first, dog second
        last = head.box_branch[-1] if isinstance(head.box_branch, torch.nn.Sequential) else head.box_branch
        last.weight.zero_()
        last.bias.zero_()  # sigmoid(0) = 0.5 for cx, cy, w and h
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), path)


def test_job_scores_hand_made_boxes_exactly(tmp_path):
    voc = tmp_path / 'voc'
    write_hand_made_voc(voc)
    wd = tmp_path / 'job'
    # the smoke preset fine-tunes 2 iterations: a checkpoint iter_2.pth in the unit's folder is taken as trained
    write_rigged_checkpoint(wd / 'finetune' / 'random_100pct_seed0' / 'iter_2.pth')
    env = dict(os.environ, OMP_NUM_THREADS='1')
    out = subprocess.run([sys.executable, os.path.join(ROOT, 'tools/run_localization_job.py'), '--preset', 'smoke',
                          '--work-dir', str(wd), '--voc', str(voc), '--unlabeled', write_images(tmp_path / 'pool', n=2),
                          '--inits', 'random', '--fractions', '1.0', '--seeds', '0', '--gradcam-fraction', '1.0',
                          '--workers', '0'], env=env, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    unit = wd / 'finetune' / 'random_100pct_seed0'
    assert (unit / 'test.log').is_file() and not (unit / 'stage.log').exists()  # evaluated, not retrained
    summary = json.loads((wd / 'summary.json').read_text())
    (run, ) = summary['runs']
    expected = dict(top1=100 / 3, top3=100.0, mean_iou=100 * (1 + 1 / 7 + 2 / 3) / 3, acc_iou50=200 / 3,
                    acc_iou70=100 / 3)
    for key, value in expected.items():
        assert run['metrics'][key] == pytest.approx(value, abs=1e-3), key
    assert run['metrics']['num_objects'] == 3
    (row, ) = summary['table']
    for key, value in expected.items():
        assert row[key] == pytest.approx(value, abs=1e-3), key
