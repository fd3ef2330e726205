"""Dense frozen-feature probes of a backbone on a COCO-format folder: linear per-patch mIoU, k-NN on instance
crops and the localisation probe (box edges regressed from each patch inside an instance, scored by IoU)
(projects/probes, docs/evidence.md), optionally with the floor rows (raw pixels; the trivial predictors: all
background, the most frequent class, the mean box targets).

    python tools/analysis/dense_probe.py work_dirs/default_job/pretrain_posfield/iter_400.pth --coco data/demo/coco \\
        --out probe.json --floors
    python tools/analysis/dense_probe.py work_dirs/default_job/pretrain_posfield/backbone.pth \\
        --config configs/demo/posfield_vit-mini-p16_demo-pool.py --coco my_coco/ --out probe.json
    python tools/analysis/dense_probe.py configs/demo/posfield_vit-mini-p16_demo-pool.py --coco data/demo/coco \\
        --seed 1 --out random.json            # a config alone: the randomly initialised backbone (seeded)

MODEL is a pre-training checkpoint (teacher by default; its config is read from the checkpoint unless --config is
given), a backbone-only file from tools/model_converters/extract_backbone.py (config from --config, or from the
pre-training checkpoint it names), or a config (random initialisation). Backbone files without a [CLS] token are
run without one, as the detector runs them (--without-cls does the same for any backbone).
"""
import argparse
import json
import os
import os.path as osp
import sys
import time

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import torch  # noqa: E402


def parse_args(argv=None):
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument('model', help='pre-training checkpoint, extract_backbone.py output, or a config (random init)')
    p.add_argument('--coco', required=True,
                   help='COCO-format folder: annotations/instances_{train,val}.json, images in train/ and val/')
    p.add_argument('--out', required=True, help='output JSON file')
    p.add_argument('--config', help='pre-training config of MODEL (default: the config stored in the checkpoint)')
    p.add_argument('--key', choices=['teacher', 'student'], default='teacher',
                   help='which network of a pre-training checkpoint')
    p.add_argument('--name', help='row name (default: from MODEL)')
    p.add_argument('--without-cls', action='store_true',
                   help='run the backbone without its [CLS] token, as the detector does (automatic for backbone '
                        'files that have none)')
    p.add_argument('--floors', action='store_true',
                   help='add the floor rows: raw pixels, and the trivial predictors (all background; the mean '
                        'training box targets for the localisation probe)')
    p.add_argument('--img-size', type=int, default=256, help='images are resized to this square size')
    p.add_argument('--crop-size', type=int, default=64, help='instance crops are resized to this square size')
    p.add_argument('--epochs', type=int, default=20, help='linear probe epochs')
    p.add_argument('--seed', type=int, default=0, help='seed of the probe and of a random initialisation')
    p.add_argument('--max-images', type=int, help='use at most this many images per split')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                   help='override settings of the config (as tools/train.py --cfg-options)')
    args = p.parse_args(argv)
    if not osp.exists(args.model):
        p.error(f'MODEL not found: {args.model}')
    if args.config and not osp.isfile(args.config):
        p.error(f'--config not found: {args.config}')
    if not osp.isdir(args.coco):
        p.error(f'--coco is not a folder: {args.coco}')
    for name in ('img_size', 'crop_size', 'epochs'):
        if getattr(args, name) < 1:
            p.error(f'--{name.replace("_", "-")} must be positive')
    return args


def config_of_checkpoint(path: str, seen=()):
    """The mmengine config stored in a checkpoint's ``meta.cfg``, following a backbone file's ``meta.source``
    (extract_backbone.py) to its pre-training checkpoint; None when neither is there. The file is read with
    ``weights_only=True`` and the config text is parsed, never executed (a checkpoint may come from anyone)."""
    from projects.common.checkpoint import config_from_text, load_checkpoint_file
    ckpt = load_checkpoint_file(path)
    meta = ckpt.get('meta') or {} if isinstance(ckpt, dict) else {}
    if isinstance(meta.get('cfg'), str):
        return config_from_text(meta['cfg'], path)
    src = meta.get('source')
    if isinstance(src, str) and osp.isfile(src) and src not in seen:
        return config_of_checkpoint(src, seen + (path, ))
    return None


def has_cls_token(path: str, key: str) -> bool:
    from projects.common.backbone_loader import read_state_dict, select_backbone
    state, _ = select_backbone(read_state_dict(path), key, path)
    return 'cls_token' in state


def load_model(args):
    """(LoadedBackbone, row name, whether [CLS] is used)."""
    import projects.posfield  # noqa: F401  (registers PosFieldViT)
    from projects.common.backbone_loader import UNUSED_IN_ANALYSIS, load_backbone
    cfg_options = args.cfg_options or None
    if args.model.endswith('.py'):
        torch.manual_seed(args.seed)
        return (load_backbone(args.model, None, cfg_options=cfg_options), args.name or 'random init',
                not args.without_cls)
    config = args.config or config_of_checkpoint(args.model)
    if config is None:
        raise SystemExit(f'{args.model} stores no config (and names no pre-training checkpoint that does): '
                         f'pass its pre-training config with --config')
    has_cls = has_cls_token(args.model, args.key)
    allow = UNUSED_IN_ANALYSIS + (() if has_cls else ('cls_token', 'cls_pos'))
    loaded = load_backbone(config, args.model, key=args.key, allow_missing=allow, cfg_options=cfg_options)
    return loaded, args.name or osp.splitext(osp.basename(args.model))[0], has_cls and not args.without_cls


def format_rows(result) -> str:
    lines = [f"{'backbone':<22} {'patch mIoU':>10} {'patch acc':>9} {'fg mIoU':>8} {'crop k-NN top1':>14} "
             f"{'box IoU':>8} {'IoU>=0.5':>8}"]

    def cell(v, width):
        return f"{'' if v is None else f'{v:.2f}':>{width}}"
    for r in result['rows']:
        box = r.get('box') or {}
        lines.append(f"{r['name']:<22} {r['patch']['miou']:>10.2f} {cell(r['patch'].get('accuracy'), 9)} "
                     f"{cell((r.get('foreground') or {}).get('miou'), 8)} "
                     f"{cell((r.get('crop_knn') or {}).get('top1'), 14)} {cell(box.get('mean_iou'), 8)} "
                     f"{cell(box.get('iou50_rate'), 8)}")
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    from projects.probes import ProbeData, backbone_patch_encoder, floor_rows, load_split, probe_row
    started = time.time()
    torch.set_num_threads(max(1, int(os.environ.get('OMP_NUM_THREADS', torch.get_num_threads()))))
    loaded, name, with_cls = load_model(args)
    coco = osp.abspath(args.coco)
    data = ProbeData(load_split(coco, 'train', args.max_images), load_split(coco, 'val', args.max_images),
                     args.img_size, loaded.patch_size, args.crop_size)
    print(f'[dense-probe] {name}: {loaded.source}; [CLS] {"used" if with_cls else "absent, not used"}; '
          f'data {coco}: {len(data.classes)} classes, {data.describe()["train"]["images"]} train / '
          f'{data.describe()["val"]["images"]} val images', flush=True)
    rows = [dict(name=name, source=loaded.source, with_cls=with_cls,
                 **probe_row(backbone_patch_encoder(loaded.backbone, with_cls), data, loaded.mean, loaded.std,
                             args.seed, epochs=args.epochs))]
    if args.floors:
        rows += floor_rows(data, loaded.mean, loaded.std, args.seed, epochs=args.epochs)
    result = dict(model=osp.abspath(args.model), config=loaded.info.get('config'), key=args.key, seed=args.seed,
                  coco=coco, data=data.describe(), epochs=args.epochs, rows=rows,
                  seconds=round(time.time() - started, 1))
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    tmp = args.out + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, args.out)  # a complete file or none: the default job treats its presence as "done"
    print(format_rows(result))
    print(f'[dense-probe] written {args.out} ({result["seconds"]} s)', flush=True)
    return result


if __name__ == '__main__':
    from projects.common.runner_setup import exit_on_bad_input
    exit_on_bad_input(main)
