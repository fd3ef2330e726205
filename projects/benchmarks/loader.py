"""The loader side (``--pipeline``): CPU seconds per image, one thread, from the file to the whole multi-crop
output of one image, of our pipeline with and without the photometric augmentation in the worker and of
DINOv2's ``DataAugmentationDINO`` (see :mod:`projects.benchmarks.pretrain_benchmark`)."""
import json
import os
import os.path as osp
import statistics
import sys
import tempfile
import time
from typing import Dict, List, Optional

from .pretrain_benchmark import ROOT, machine_info, now, run_child, write_record
from .train_step import make_images, train_pipeline_of

PIPELINE_KINDS = ('ours', 'ours-worker-photometric', 'dinov2')


def _multicrop_of(pipeline: list, config: str) -> dict:
    crops = [t for t in pipeline if isinstance(t, dict) and t.get('type') == 'PosFieldMultiCrop']
    if len(crops) != 1:
        raise SystemExit(f'--pipeline: {config} has {len(crops)} PosFieldMultiCrop transforms in its train '
                         'pipeline; expected one')
    return crops[0]


def image_files(folder: str) -> List[str]:
    exts = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')
    files = sorted(osp.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(exts))
    if not files:
        raise SystemExit(f'--images {folder}: no image files ({", ".join(exts)})')
    return files


def loader_cpu(kind: str, config: str, images: str, num_images: int, warmup: int,
               reference_src: Optional[str] = None, multicrop: Optional[dict] = None) -> dict:
    """One run of the loader side in this process: CPU seconds per image (one thread), the whole multi-crop
    output of each image, from its file."""
    import copy

    import cv2
    import torch
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    files = image_files(images)
    if kind == 'dinov2':
        from PIL import Image
        sys.path.insert(0, reference_src)
        from dinov2.data.augmentations import DataAugmentationDINO  # the reference's code, run as it ships
        crop = multicrop or {}  # our config's crop numbers, sizes and scales (read by the driver)
        augment = DataAugmentationDINO(
            crop.get('global_crops_scale', (0.32, 1.0)), crop.get('local_crops_scale', (0.05, 0.32)),
            crop.get('local_crops_number', 8), global_crops_size=crop.get('global_crops_size', 224),
            local_crops_size=crop.get('local_crops_size', 96))

        def load(path):  # DINOv2's decoder: PIL, converted to RGB
            with open(path, 'rb') as f:
                img = Image.open(f).convert('RGB')
            out = augment(img)
            return len(out['global_crops']) + len(out['local_crops'])
    else:
        from mmcv.transforms import Compose
        from mmengine.registry import init_default_scope

        from projects.common.runner_setup import load_config
        cfg = load_config(config)
        init_default_scope(cfg.get('default_scope', 'mmpretrain'))
        pipeline = copy.deepcopy(train_pipeline_of(cfg.train_dataloader.dataset))
        crop = _multicrop_of(pipeline, config)
        if kind == 'ours-worker-photometric':
            crop['photometric'] = True
        transform = Compose(pipeline)

        def load(path):
            out = transform(dict(img_path=path))
            if out is None:
                raise SystemExit(f'--pipeline: the pipeline skipped {path}')
            return len(out['inputs'])
    order = [files[i % len(files)] for i in range(warmup + num_images)]
    views = [load(path) for path in order[:warmup]]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    views = [load(path) for path in order[warmup:]]
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return dict(kind=kind, images=num_images, distinct_images=min(len(files), num_images), views_per_image=views[0],
                cpu_s_per_image=cpu / num_images, wall_s_per_image=wall / num_images,
                images_per_cpu_s=num_images / cpu, threads=1, data=images)


def run_pipeline_benchmark(args, script: str) -> dict:
    """Alternating rounds of the loader runs (``script``, the command line, run once per run with
    ``--pipeline-child``); ratios of CPU time per image within each round."""
    config = osp.abspath(args.configs[0])
    kinds = ['ours', 'ours-worker-photometric']
    if args.reference:
        src = osp.join(osp.abspath(args.reference), 'src')
        if not osp.isdir(osp.join(src, 'dinov2')):
            raise SystemExit(f'--reference {args.reference}: no DINOv2 source tree at {src} (docs/benchmarks.md)')
        kinds.append('dinov2')
    from projects.common.runner_setup import load_config
    crop = _multicrop_of(train_pipeline_of(load_config(config).train_dataloader.dataset), config)
    crop = {k: v for k, v in crop.items() if k.startswith(('global_crops', 'local_crops'))}
    tmp = None
    images = args.images
    if images is None:
        tmp = tempfile.TemporaryDirectory(prefix='bench_loader_imgs_')
        images = make_images(tmp.name, n=min(args.num_images, 64))
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''),
               OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    head = [script, config, '--pipeline', '--images', osp.abspath(images), '--num-images',
            str(args.num_images), '--warmup', str(args.warmup)]
    venv_python = osp.join(osp.abspath(args.reference), 'venv', 'bin', 'python') if args.reference else None
    runs: Dict[str, List[dict]] = {}
    try:
        for rnd in range(args.rounds):
            for kind in kinds:
                python = sys.executable
                cmd_tail = ['--pipeline-child', kind]
                if kind == 'dinov2':
                    python = args.reference_python or (venv_python if osp.exists(venv_python) else sys.executable)
                    cmd_tail += ['--reference', osp.abspath(args.reference), '--multicrop', json.dumps(crop)]
                result = run_child([python, *head, *cmd_tail], env, f'round {rnd + 1}/{args.rounds} {kind}')
                result['round'] = rnd
                runs.setdefault(kind, []).append(result)
                print(f"[bench]   {result['cpu_s_per_image'] * 1e3:.2f} ms CPU per image, "
                      f"{result['images_per_cpu_s']:.1f} img/s per core", flush=True)
    finally:
        if tmp is not None:
            tmp.cleanup()
    ratios = []
    for i, a in enumerate(kinds):
        for b in kinds[i + 1:]:
            pairs = list(zip(runs[a], runs[b]))
            ratios.append(dict(run=a, against=b, rounds=len(pairs), cpu_per_image_ratio=statistics.median(
                x['cpu_s_per_image'] / y['cpu_s_per_image'] for x, y in pairs)))
    print(f"\n{'run':<26} {'ms CPU/img (per round)':<32} {'img/s per core':>14}")
    for kind, rs in runs.items():
        per_round = ', '.join('%.2f' % (r['cpu_s_per_image'] * 1e3) for r in rs)
        print(f"{kind:<26} {per_round:<32} {statistics.median(r['images_per_cpu_s'] for r in rs):>14.1f}")
    for row in ratios:
        print(f"{row['run']} / {row['against']}: CPU per image x{row['cpu_per_image_ratio']:.3f} "
              '(median of within-round ratios)')
    return write_record(dict(mode='pipeline', argv=list(args.argv), date=now(), machine=machine_info(), config=config,
                             images=args.images or 'synthetic random-noise 500x375 JPEGs', runs=runs, ratios=ratios),
                        args.out)

