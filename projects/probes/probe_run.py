"""One dense-probe run, as ``tools/analysis/dense_probe.py`` starts it: the backbone (a pre-training checkpoint, a
backbone-only file or a config's random initialisation), its probe row and optionally the floor rows, written
as one JSON file."""
import json
import os
import os.path as osp
import time
from typing import List, Optional, Sequence, Tuple

import torch

from projects.common.backbone_loader import (
    UNUSED_IN_ANALYSIS,
    LoadedBackbone,
    load_backbone,
    read_state_dict,
    select_backbone,
)
from projects.common.checkpoint import config_of_checkpoint
from projects.common.errors import BadInputError

from .coco_patches import load_split
from .dense import PROBE_LRS, ProbeData, backbone_patch_encoder, backbone_rows_at_shared_lrs, floor_rows, probe_row


def has_cls_token(path: str, key: str) -> bool:
    state, _ = select_backbone(read_state_dict(path), key, path)
    return 'cls_token' in state


def load_probed_backbone(model: str, config: Optional[str] = None, key: str = 'teacher', name: Optional[str] = None,
                         without_cls: bool = False, seed: int = 0,
                         cfg_options: Optional[dict] = None) -> Tuple[LoadedBackbone, str, bool]:
    """(the backbone of ``model``, its row name, whether its [CLS] token is used). ``model``: a pre-training
    checkpoint (its config from ``config`` or from the checkpoint), a backbone-only file (without a [CLS] token
    it runs without one, as the detector runs it) or a config (random initialisation, seeded)."""
    cfg_options = cfg_options or None
    if model.endswith('.py'):
        torch.manual_seed(seed)
        return load_backbone(model, None, cfg_options=cfg_options), name or 'random init', not without_cls
    config = config or config_of_checkpoint(model)
    if config is None:
        raise SystemExit(f'{model} stores no config (and names no pre-training checkpoint that does): '
                         f'pass its pre-training config with --config')
    has_cls = has_cls_token(model, key)
    allow = UNUSED_IN_ANALYSIS + (() if has_cls else ('cls_token', 'cls_pos'))
    loaded = load_backbone(config, model, key=key, allow_missing=allow, cfg_options=cfg_options)
    return loaded, name or osp.splitext(osp.basename(model))[0], has_cls and not without_cls


def format_rows(result: dict) -> str:
    w = max([22] + [len(r['name']) for r in result['rows']])
    lines = [f"{'backbone':<{w}} {'patch mIoU':>10} {'patch acc':>9} {'fg mIoU':>8} {'crop k-NN top1':>14} "
             f"{'box IoU':>8} {'IoU>=0.5':>8}"]

    def cell(v, width):
        return f"{'' if v is None else f'{v:.2f}':>{width}}"
    for r in result['rows']:
        box = r.get('box') or {}
        lines.append(f"{r['name']:<{w}} {r['patch']['miou']:>10.2f} {cell(r['patch'].get('accuracy'), 9)} "
                     f"{cell((r.get('foreground') or {}).get('miou'), 8)} "
                     f"{cell((r.get('crop_knn') or {}).get('top1'), 14)} {cell(box.get('mean_iou'), 8)} "
                     f"{cell(box.get('iou50_rate'), 8)}")
    return '\n'.join(lines)


def run_dense_probe(model: str, coco: str, out: str, config: Optional[str] = None, key: str = 'teacher',
                    name: Optional[str] = None, without_cls: bool = False, floors: bool = False, img_size: int = 256,
                    crop_size: int = 64, epochs: int = 20, seed: int = 0, max_images: Optional[int] = None,
                    cfg_options: Optional[dict] = None, lrs: Sequence[float] = PROBE_LRS) -> dict:
    """Probe ``model`` (see :func:`load_probed_backbone`) on the COCO-format folder ``coco``; write the rows to
    ``out`` and print them. The arguments are ``tools/analysis/dense_probe.py``'s options of the same names."""
    started = time.time()
    torch.set_num_threads(max(1, int(os.environ.get('OMP_NUM_THREADS', torch.get_num_threads()))))
    loaded, name, with_cls = load_probed_backbone(model, config, key, name, without_cls, seed, cfg_options)
    coco = osp.abspath(coco)
    data = ProbeData(load_split(coco, 'train', max_images), load_split(coco, 'val', max_images),
                     img_size, loaded.patch_size, crop_size)
    print(f'[dense-probe] {name}: {loaded.source}; [CLS] {"used" if with_cls else "absent, not used"}; '
          f'data {coco}: {len(data.classes)} classes, {data.describe()["train"]["images"]} train / '
          f'{data.describe()["val"]["images"]} val images', flush=True)
    rows = [dict(name=name, source=loaded.source, with_cls=with_cls,
                 **probe_row(backbone_patch_encoder(loaded.backbone, with_cls), data, loaded.mean, loaded.std,
                             seed, epochs=epochs, lrs=lrs))]
    if floors:
        rows += floor_rows(data, loaded.mean, loaded.std, seed, epochs=epochs, lrs=lrs)
    result = dict(model=osp.abspath(model), config=loaded.info.get('config'), key=key, seed=seed,
                  coco=coco, data=data.describe(), epochs=epochs, lrs=[float(lr) for lr in lrs], rows=rows,
                  seconds=round(time.time() - started, 1))
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    tmp = out + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, out)  # a complete file or none: the default job treats its presence as "done"
    print(format_rows(result))
    print(f'[dense-probe] written {out} ({result["seconds"]} s)', flush=True)
    return result


def shared_lr_table(paths: Sequence[str]) -> dict:
    """The rows of several ``dense_probe.py`` outputs as ``tools/analysis/probe_table.py`` prints them: each file's
    backbone row (its first) read at the learning rates shared by all of them, its floor rows at their own
    (:func:`~projects.probes.dense.backbone_rows_at_shared_lrs`). A row is named ``<folder>: <row name>``, the
    folder of its probe.json relative to the files' common folder."""
    probes = []
    for path in paths:
        try:
            with open(path) as f:
                probe = json.load(f)
        except json.JSONDecodeError as exc:
            raise BadInputError(f'{path}: not JSON ({exc})') from None
        if not isinstance(probe, dict) or not isinstance(probe.get('rows'), list) or not probe['rows']:
            raise BadInputError(f'{path}: not a tools/analysis/dense_probe.py output (expected a "rows" list)')
        probes.append((path, probe['rows']))
    folders = [osp.dirname(osp.abspath(p)) for p in paths]
    common = osp.commonpath(folders) if len(set(folders)) > 1 else osp.dirname(folders[0])
    lrs, read = backbone_rows_at_shared_lrs([rows for _, rows in probes])
    table: List[dict] = []
    for (path, _), rows, folder in zip(probes, read, folders):
        label = osp.relpath(folder, common)
        table += [dict(r, name=f'{label}: {r["name"]}', file=osp.abspath(path)) for r in rows]
    return dict(shared_lr=lrs, rows=table)
