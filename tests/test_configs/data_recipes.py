"""Data recipes: how tests/test_configs/test_every_config_runs.py runs each shipped config on data it writes.

A recipe is chosen by the config's path (``RECIPES``, first match; a config that matches none fails with
"config X has no data recipe in tests/test_configs/data_recipes.py"). It points the config at a data set that
:class:`GeneratedData` writes once per test module, in the layout the config expects, so that mostly only data
roots change. Everything else the test may change is in :func:`shrink_run` (batch size, loop length and
val interval, workers, log interval, work dir, a seed where the config leaves it random; checkpointing stays
as shipped) and :func:`shrink_detection_input` (detection input scale). Pre-trained
weights a config loads are written by :class:`Checkpoints` from the model of the matching pre-training config,
so the loading code runs too. Architecture, heads, losses and pipelines are never touched.
"""
from __future__ import annotations

import glob
import os.path as osp
import re
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from mmengine.config import Config

from tests.helpers import ROOT, blocky_texture, build_model, save_checkpoint, save_image, write_coco, write_images
from tests.test_simclr_loc.voc_fixture import voc_xml

TRAIN_BATCH = 2
TRAIN_ITERS = 2
# Every generated training set holds TRAIN_BATCH * TRAIN_ITERS items, so one epoch of an epoch-based config
# is exactly the TRAIN_ITERS optimisation steps (the loop type stays as shipped).
TRAIN_ITEMS = TRAIN_BATCH * TRAIN_ITERS
# Detection configs above this size are run at it: ViT-B at 1024 px is minutes per step on a CPU. 256 px at
# patch 16 is a 16 x 16 grid, so windowed attention (window 14) still pads and splits into 4 windows.
DET_SCALE = (256, 256)


def _rel(path: str) -> str:
    return osp.relpath(osp.abspath(path), ROOT).replace(osp.sep, '/')


class _WrittenOnce:
    """Files written under ``base`` on first request, then reused: ``_once(label, write, key)`` calls
    ``write(path)`` for a new path named after ``label`` once per key (default: the label) and returns it."""

    def __init__(self, base: Path):
        self.base = Path(base)
        self.base.mkdir(parents=True, exist_ok=True)
        self._done: Dict[str, str] = {}

    def _once(self, label: str, write: Callable[[Path], None], key: Optional[str] = None) -> str:
        key = label if key is None else key
        if key not in self._done:
            path = self.base / f'{len(self._done)}_{label}'
            write(path)
            self._done[key] = str(path)
        return self._done[key]


# ----------------------------------------------------------------------------------------------------- images
def _texture(rng, h: int, w: int) -> np.ndarray:
    """Blocky random texture with a bright rectangle, as uint8 (h, w, 3)."""
    img = (blocky_texture(rng, h, w) * 120 + 40).astype(np.uint8)
    y0, x0 = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
    img[y0:y0 + h // 3, x0:x0 + w // 3] = rng.integers(150, 255, 3)
    return img


class GeneratedData(_WrittenOnce):
    """Data sets written on first use (one per layout the configs read); each method returns its data root."""

    IMAGENET_WNIDS = ('n01440764', 'n01443537')  # ImageNet class folders; labels 0 and 1
    COCO_CATEGORIES = ((1, 'person'), (3, 'car'), (18, 'dog'))  # real COCO ids/names (the 80-class configs)
    COCO_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31,
                32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58,
                59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89,
                90)  # COCO 2017's 80 category ids, in mmdet's class order

    def _once(self, label: str, write: Callable[[Path], None], key: Optional[str] = None) -> str:
        return super()._once(label, write, key) + '/'  # configs join data_root and relative paths as strings

    # mmpretrain's ImageNet layout: <root>/{train,val}/<wnid>/*.JPEG with meta/{train,val}.txt ("path label")
    def imagenet(self) -> str:
        def write(root: Path):
            rng = np.random.default_rng(1)
            (root / 'meta').mkdir(parents=True)
            for split, per_class in (('train', TRAIN_ITEMS // 2), ('val', 1)):
                lines = []
                for label, wnid in enumerate(self.IMAGENET_WNIDS):
                    for i in range(per_class):
                        rel = f'{wnid}/{wnid}_{split}_{i}.JPEG'
                        save_image(root / split / rel, _texture(rng, 72 + 8 * i, 88 - 8 * label))
                        lines.append(f'{rel} {label}\n')
                (root / 'meta' / f'{split}.txt').write_text(''.join(lines))
        return self._once('imagenet', write)

    # any folder of images, searched recursively (CustomDataset with_label=False)
    def image_folder(self) -> str:
        def write(root: Path):
            write_images(root, n=TRAIN_ITEMS // 2, seed=2)
            write_images(root / 'nested', n=TRAIN_ITEMS - TRAIN_ITEMS // 2, seed=3)
        return self._once('image_folder', write)

    # COCO 2017 layout and category names (the ViT-B/S Mask R-CNN configs)
    def coco2017(self) -> str:
        from mmdet.datasets import CocoDataset
        # the file lists all 80 categories under their real ids, as COCO's own files do (the checked dataset
        # refuses a file that lacks config classes)
        listed = list(zip(self.COCO_IDS, CocoDataset.METAINFO['classes']))
        return self._once('coco2017', lambda root: write_coco(
            root, TRAIN_ITEMS, 1, seed=3, categories=self.COCO_CATEGORIES, listed=listed,
            splits=('train2017', 'val2017')))

    # the COCO-format layout of the CPU and demo detection configs (shape classes, train/ val/)
    def coco_shapes(self) -> str:
        return self._once('coco_shapes', lambda root: write_coco(root, TRAIN_ITEMS, 2, seed=4))

    def voc(self, layout: Dict[Tuple[str, str], Sequence[str]]) -> str:
        """A VOC-layout root: for each (source folder relative to the root, split) the listed class names, one
        image each with one big object of that class (JPEGImages/, Annotations/*.xml, ImageSets/Main/*.txt)."""
        def write(root: Path):
            rng = np.random.default_rng(5)
            for n, ((source, split), names) in enumerate(sorted(layout.items())):
                src = root / source
                (src / 'Annotations').mkdir(parents=True, exist_ok=True)
                (src / 'ImageSets' / 'Main').mkdir(parents=True, exist_ok=True)
                ids = []
                for i, name in enumerate(names):
                    img_id = f'{n:02d}{i:04d}'
                    w, h = 96, 80
                    img = _texture(rng, h, w) // 2
                    x0, y0 = int(rng.integers(1, 20)), int(rng.integers(1, 16))
                    x1, y1 = int(rng.integers(x0 + 40, w)), int(rng.integers(y0 + 30, h))
                    img[y0 - 1:y1, x0 - 1:x1] = rng.integers(150, 255, 3)  # VOC boxes are 1-based, inclusive
                    save_image(src / 'JPEGImages' / f'{img_id}.jpg', img)
                    (src / 'Annotations' / f'{img_id}.xml').write_text(
                        voc_xml(f'{img_id}.jpg', w, h, [dict(name=name, box=(x0, y0, x1, y1))]))
                    ids.append(img_id)
                with open(src / 'ImageSets' / 'Main' / f'{split}.txt', 'a') as f:
                    f.write(''.join(i + '\n' for i in ids))
        return self._once('voc', write, key=repr(sorted(layout.items())))


# -------------------------------------------------------------------------------------------- checkpoints
class Checkpoints(_WrittenOnce):
    """Pre-trained weights a config loads, written once from the matching pre-training model (random init)."""

    def posfield_backbone(self, pretrain_config: str, layout: str = 'teacher') -> str:
        """The backbone of ``pretrain_config``, saved as the detector reads it: ``layout='teacher'``: as in a
        PosFieldSSL checkpoint (``teacher.module.backbone.*``, the EMA teacher is a copy of the student backbone);
        ``'backbone'``: as tools/model_converters/extract_backbone.py writes it (no prefix, pre-training-only
        tokens dropped)."""
        def write(path: Path):
            from projects.common.backbone_loader import IGNORED_SOURCE_KEYS
            state = build_model(Config.fromfile(osp.join(ROOT, pretrain_config)).model.backbone).state_dict()
            if layout == 'teacher':
                state = {f'teacher.module.backbone.{k}': v for k, v in state.items()}
            else:
                state = {k: v for k, v in state.items() if not k.startswith(IGNORED_SOURCE_KEYS)}
            save_checkpoint(path, state, config=pretrain_config)
        return self._once(f'posfield_{layout}.pth', write, key=f'{pretrain_config}|{layout}')

    def mmpretrain_model(self, config: str) -> str:
        """A whole-model checkpoint (``backbone.*``, ``neck.*``, ...) of ``config`` (a repository path or an
        ``mmpretrain::`` package config)."""
        def write(path: Path):
            if config.startswith('mmpretrain::'):
                from mmengine.hub import get_config
                model_cfg = get_config(config).model
            else:
                model_cfg = Config.fromfile(osp.join(ROOT, config)).model
            save_checkpoint(path, build_model(model_cfg).state_dict(), config=config)
        return self._once('model.pth', write, key=config)


# ------------------------------------------------------------------------------------------- overrides
def _set_dataset_root(cfg, root: str, loaders=('train_dataloader', 'val_dataloader', 'test_dataloader')) -> None:
    for key in loaders:
        if cfg.get(key) is not None:
            cfg[key].dataset.data_root = root


def _evaluators(cfg):
    for key in ('val_evaluator', 'test_evaluator'):
        ev = cfg.get(key)
        if ev is None:
            continue
        yield from (ev if isinstance(ev, (list, tuple)) else [ev])


def _reroot_ann_files(cfg, root: str) -> None:
    """Evaluator annotation paths under the config's ``data_root`` variable move to ``root``."""
    old = cfg.get('data_root')
    for ev in _evaluators(cfg):
        ann = ev.get('ann_file')
        if ann is None:
            continue
        if not old or not ann.startswith(old):
            raise ValueError(f'{cfg.filename}: evaluator ann_file {ann!r} is not under data_root={old!r}; '
                             'the data recipe cannot re-root it')
        ev.ann_file = root + ann[len(old):]


def shrink_detection_input(cfg, size: Tuple[int, int] = DET_SCALE) -> None:
    """Run a detection config at ``size`` if its ``image_size`` is larger: every pipeline value equal to
    ``image_size`` under the keys ``scale`` (Resize / RandomResize), ``crop_size`` (RandomCrop) and ``size``
    (Pad), in the train/val/test dataloaders and in ``model.data_preprocessor`` (batch padding such as
    mmdet's BatchFixedSizePad ``size``), becomes ``size``."""
    if 'image_size' not in cfg:
        raise KeyError(f'{cfg.filename}: a detection config needs the `image_size` variable for its input scale')
    full = tuple(cfg.image_size)
    if max(full) <= max(size):
        return
    changed = dict()

    def visit(node, where):
        if isinstance(node, dict):
            for key in ('scale', 'crop_size', 'size'):
                if key in node and isinstance(node[key], (list, tuple)) and tuple(node[key]) == full:
                    node[key] = tuple(size)
                    changed[where] = changed.get(where, 0) + 1
            for value in node.values():
                visit(value, where)
        elif isinstance(node, (list, tuple)):
            for value in node:
                visit(value, where)

    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        visit(cfg[key].dataset.pipeline, key)
    visit(cfg.model.get('data_preprocessor', {}), 'model.data_preprocessor')
    for key in ('train_dataloader', 'val_dataloader'):
        if not changed.get(key):
            raise ValueError(f'{cfg.filename}: no {key} pipeline step uses image_size={full}; '
                             'cannot run it at a smaller input scale')


def shrink_run(cfg, work_dir: str) -> None:
    """The run-length overrides shared by every recipe."""
    cfg.work_dir = work_dir
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(key)
        if loader is None:
            continue
        loader.batch_size = TRAIN_BATCH if key == 'train_dataloader' else min(loader.get('batch_size', 1),
                                                                              TRAIN_BATCH)
        loader.num_workers = 0
        loader.persistent_workers = False
    loop = cfg.train_cfg
    loop_type = str(loop.get('type', '')).split('.')[-1]
    if loop_type in ('IterBasedTrainLoop', 'ResumableIterBasedTrainLoop'):
        loop.max_iters = TRAIN_ITERS
        loop.val_interval = TRAIN_ITERS
    elif loop_type in ('EpochBasedTrainLoop', 'ResumableEpochBasedTrainLoop'):
        loop.max_epochs = 1  # one epoch of TRAIN_ITEMS images is TRAIN_ITERS steps
        loop.val_interval = 1
    else:
        raise ValueError(f'{cfg.filename}: train_cfg type {loop.get("type")!r}: the test knows how to shorten '
                         '(Resumable)IterBasedTrainLoop and (Resumable)EpochBasedTrainLoop only')
    loop.pop('val_begin', None)
    hooks = cfg.default_hooks
    if hooks.get('logger') is not None:
        hooks.logger.interval = 1
    for hook in cfg.get('custom_hooks', None) or []:
        if 'num_workers' in hook:
            hook.num_workers = 0
    # mmdet's runtime leaves the seed random; a test must be repeatable
    if (cfg.get('randomness') or {}).get('seed') is None:
        cfg.randomness = dict(seed=0)


# ------------------------------------------------------------------------------------------------ recipes
def _imagenet(cfg, data: GeneratedData, ckpts: Checkpoints) -> None:
    root = data.imagenet()
    _set_dataset_root(cfg, root)
    for hook in cfg.get('custom_hooks', None) or []:  # k-NN evaluation on the same labelled layout
        for key in ('train_dataset', 'val_dataset'):
            if key in hook:
                hook[key].data_root = root


def _image_folder(cfg, data: GeneratedData, ckpts: Checkpoints) -> None:
    _set_dataset_root(cfg, data.image_folder())


def _coco(root: str):
    def apply(cfg, data: GeneratedData, ckpts: Checkpoints) -> None:
        path = getattr(data, root)()
        _set_dataset_root(cfg, path)
        _reroot_ann_files(cfg, path)
        shrink_detection_input(cfg)
        _det_pretrained(cfg, ckpts)
    return apply


# Detection backbone init_cfg checkpoints: the pre-training config whose model they come from (by the
# detection config's name), and how it is saved. init_cfg=None (random-init configs) needs none.
VITB_PRETRAIN = 'configs/posfield/posfield_vit-base-p16_8xb64-amp-100e_in1k.py'
VITB_DAGGER_PRETRAIN = 'configs/posfield/dinov2-dagger_vit-base-p16_8xb64-amp-100e_in1k.py'
VITS_PRETRAIN = 'configs/posfield/posfield_vit-small-p16_4xb64-amp-100e_in1k.py'
DET_PRETRAINED = [
    (r'mask-rcnn_vit-b-p16-posfield_', lambda c: c.posfield_backbone(VITB_PRETRAIN)),
    (r'mask-rcnn_vit-b-p16-dinov2-dagger_', lambda c: c.posfield_backbone(VITB_DAGGER_PRETRAIN)),
    (r'mask-rcnn_vit-s-p16-posfield_', lambda c: c.posfield_backbone(VITS_PRETRAIN)),
    # the default job extracts the backbone (tools/model_converters/extract_backbone.py) before detection
    (r'demo/mask-rcnn_vit-mini-p16_', lambda c: c.posfield_backbone('configs/demo/posfield_vit-mini-p16_demo-pool.py',
                                                                    layout='backbone')),
    (r'demo/mask-rcnn_vit-mini-p16-dinov2-dagger_', lambda c: c.posfield_backbone(
        'configs/demo/dinov2-dagger_vit-mini-p16_demo-pool.py', layout='backbone')),
]


def _only_match(table: list, table_name: str, cfg, needs: str):
    """The value of the one (pattern, value) row of ``table`` whose pattern matches the config's path."""
    name = _rel(cfg.filename)
    found = [value for pattern, value in table if re.search(pattern, name)]
    if len(found) != 1:
        raise LookupError(f'config {name} {needs} but has {len(found)} matches in {table_name} of '
                          'tests/test_configs/data_recipes.py')
    return found[0]


def _det_pretrained(cfg, ckpts: Checkpoints) -> None:
    init = cfg.model.backbone.get('init_cfg')
    if init is None:
        return
    make = _only_match(DET_PRETRAINED, 'DET_PRETRAINED', cfg,
                       f'loads a pre-trained backbone ({init.get("checkpoint")})')
    init.checkpoint = make(ckpts)


def _voc_sources(dataset) -> List[Tuple[str, str]]:
    """(folder relative to data_root, split) pairs a VOCLocalizationDataset config reads."""
    sources = dataset.get('sources')
    if not sources:
        return [('', dataset.split)]
    return [(s['data_root'], s['split']) if isinstance(s, dict) else tuple(s) for s in sources]


# Localisation init checkpoints: by the config's name, the config whose model they come from (a glob that must
# match one file, or an mmpretrain:: package config).
LOC_PRETRAINED = [
    (r'clsloc_efficientnet-b1_simclr-in1k_', 'configs/simclr/simclr_efficientnet-b1_8xb64-lars-coslr-200e_in1k.py'),
    (r'clsloc_efficientnet-lite0_simclr-demo-pool_', 'configs/simclr/simclr_efficientnet-lite0_*_demo-pool.py'),
    # mmpretrain's ImageNet-supervised EfficientNet-B1 classifier (what the config's comment names)
    (r'clsloc_efficientnet-b1_supervised-in1k_', 'mmpretrain::efficientnet/efficientnet-b1_8xb32_in1k.py'),
]


def _localization(cfg, data: GeneratedData, ckpts: Checkpoints) -> None:
    """VOC-layout data written where the config's sources and splits point. Training: TRAIN_ITEMS images,
    one per class (so a class-stratified label fraction, which keeps at least one image per class, keeps all
    of them), spread over the training sources; every evaluation split: 2 images."""
    from projects.simclr_loc.datasets.voc_localization import VOC_CLASSES
    train = cfg.train_dataloader.dataset
    classes = list(train.get('classes') or VOC_CLASSES)[:TRAIN_ITEMS]
    layout: Dict[Tuple[str, str], List[str]] = {}
    sources = _voc_sources(train)
    for i, name in enumerate(classes):
        layout.setdefault(sources[i % len(sources)], []).append(name)
    for key in ('val_dataloader', 'test_dataloader'):
        if cfg.get(key) is not None:
            for source in _voc_sources(cfg[key].dataset):
                layout[source] = classes[:2]
    _set_dataset_root(cfg, data.voc(layout))
    model = cfg.model
    if model.get('init') in ('simclr', 'supervised'):
        source = _only_match(LOC_PRETRAINED, 'LOC_PRETRAINED', cfg, f'initialises from {model.init_checkpoint}')
        if not source.startswith('mmpretrain::'):
            matches = sorted(glob.glob(osp.join(ROOT, source)))
            if len(matches) != 1:
                raise LookupError(f'config {_rel(cfg.filename)}: LOC_PRETRAINED source {source} matches '
                                  f'{len(matches)} files')
            source = _rel(matches[0])
        model.init_checkpoint = ckpts.mmpretrain_model(source)


# (pattern on the path relative to the repository, recipe); the first match applies
RECIPES: List[Tuple[str, Callable]] = [
    (r'^configs/posfield/.*_in1k(_knn-val)?\.py$', _imagenet),
    (r'^configs/posfield/.*_(unlabeled-folder|cpu-smoke)\.py$', _image_folder),
    (r'^configs/demo/(posfield|dinov2-dagger)_.*_demo-pool\.py$', _image_folder),
    (r'^configs/simclr/.*_in1k\.py$', _imagenet),
    (r'^configs/simclr/.*_(unlabeled-folder|cpu-tiny|demo-pool)\.py$', _image_folder),
    (r'^configs/localization/.*_(voc0712-\d+pct|cpu-tiny|demo-voc)\.py$', _localization),
    (r'^configs/mask_rcnn/.*_coco(_loc-metric)?\.py$', _coco('coco2017')),
    (r'^configs/mask_rcnn/.*_coco-format\.py$', _coco('coco_shapes')),
    (r'^configs/demo/mask-rcnn_.*_demo-coco\.py$', _coco('coco_shapes')),
]


def recipe_for(path: str) -> Callable:
    name = _rel(path)
    for pattern, recipe in RECIPES:
        if re.search(pattern, name):
            return recipe
    raise LookupError(f'config {name} has no data recipe in tests/test_configs/data_recipes.py: add a '
                      '(path pattern, recipe) entry to RECIPES that writes the data it reads')


def apply_recipe(cfg, path: str, data: GeneratedData, ckpts: Checkpoints, work_dir: str):
    """The config ready to run for two steps on generated data."""
    recipe_for(path)(cfg, data, ckpts)
    shrink_run(cfg, work_dir)
    return cfg


__all__ = ['GeneratedData', 'Checkpoints', 'RECIPES', 'recipe_for', 'apply_recipe', 'shrink_run',
           'shrink_detection_input', 'TRAIN_ITERS', 'TRAIN_BATCH', 'DET_SCALE']
