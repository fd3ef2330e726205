"""Grad-CAM heat maps of classifiers (e.g. the classify-and-localise model), one or more models side by side.

For each image one PNG: the input, then one heat-map overlay per model (red = the regions that raise the score
of the target class most), captioned with the predicted class. Uses the `grad-cam` package
(pytorch_grad_cam). ``tools/analysis/gradcam.py`` is the command line; tools/run_localization_job.py runs it.
"""
from __future__ import annotations

import os
import os.path as osp
from typing import List, Optional, Sequence, Tuple

METHODS = {
    'gradcam': 'GradCAM', 'gradcam++': 'GradCAMPlusPlus', 'xgradcam': 'XGradCAM', 'layercam': 'LayerCAM',
    'eigencam': 'EigenCAM', 'eigengradcam': 'EigenGradCAM', 'hirescam': 'HiResCAM',
}

def resolve_module(root, path: str):
    """``"backbone.layers.-1"`` -> the module (names, or integer indices into sequences)."""
    module = root
    for token in path.replace('[', '.').replace(']', '').split('.'):
        if token == '':
            continue
        if token.lstrip('-').isdigit() and not hasattr(module, token):
            try:
                module = module[int(token)]
                continue
            except (TypeError, IndexError) as exc:
                raise ValueError(f'--target-layer {path!r}: cannot index {type(module).__name__} with {token}') from exc
        if not hasattr(module, token):
            children = ', '.join(name for name, _ in module.named_children())
            raise ValueError(f'--target-layer {path!r}: {type(module).__name__} has no {token!r} '
                             f'(children: {children})')
        module = getattr(module, token)
    return module


def default_target_layer(model):
    """The last convolutional stage of the backbone (where Grad-CAM is usually taken)."""
    import torch.nn as nn
    backbone = model.backbone
    if hasattr(backbone, 'model') and hasattr(backbone.model, '_bn1'):  # EfficientNetLite
        return backbone.model._bn1, 'backbone.model._bn1'
    if isinstance(getattr(backbone, 'layers', None), nn.ModuleList):  # mmpretrain EfficientNet and others
        return backbone.layers[-1], f'backbone.layers.{len(backbone.layers) - 1}'
    if hasattr(backbone, 'res_layers'):  # mmpretrain ResNet
        name = backbone.res_layers[-1]
        return getattr(backbone, name)[-1], f'backbone.{name}.-1'
    convs = [(n, m) for n, m in backbone.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f'{type(backbone).__name__} has no Conv2d; pass --target-layer')
    return convs[-1][1], f'backbone.{convs[-1][0]}'


def logits_module(model):
    """A torch module returning only the class logits of an mmpretrain classifier (what pytorch_grad_cam needs)."""
    import torch.nn as nn

    class LogitsOnly(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            out = self.inner.head(self.inner.extract_feat(x))  # ClsLocHead gives (logits, boxes)
            return out[0] if isinstance(out, (tuple, list)) else out

    return LogitsOnly(model)


class LoadedModel:
    """A model built from a config + checkpoint, with its test pipeline and class names."""

    def __init__(self, config: str, checkpoint: str, device: str, layer_path: Optional[str], name: str,
                 cfg_options: Optional[dict] = None):
        from mmengine.config import Config
        from mmengine.dataset import Compose
        from mmengine.registry import init_default_scope
        from mmengine.runner import load_checkpoint
        from mmengine.utils import import_modules_from_strings

        for path, what in ((config, 'config'), (checkpoint, 'checkpoint')):
            if not osp.isfile(path):
                raise FileNotFoundError(f'{what} file not found: {path}')
        import projects.common  # noqa: F401  (torch>=2.6 checkpoint loading)
        cfg = Config.fromfile(config)
        if cfg_options:
            cfg.merge_from_dict(cfg_options)
        if cfg.get('custom_imports'):
            import_modules_from_strings(**cfg.custom_imports)
        init_default_scope(cfg.get('default_scope', 'mmpretrain'))
        from mmpretrain.registry import DATASETS, MODELS
        self.name, self.config, self.checkpoint = name, config, checkpoint
        model = MODELS.build(cfg.model)
        from mmpretrain.models import ImageClassifier
        if not isinstance(model, ImageClassifier) or getattr(model, 'head', None) is None:
            raise ValueError(f'{config}: Grad-CAM needs a classifier with a head (ClsLocModel or ImageClassifier); '
                             f'this config builds {type(model).__name__}')
        # strict: a checkpoint of another architecture must not load half-way
        ckpt = load_checkpoint(model, checkpoint, map_location='cpu', strict=True, logger='silent')
        self.model = model.to(device).eval()
        loader = cfg.get('test_dataloader') or cfg.get('val_dataloader')
        if loader is None:
            raise KeyError(f'{config}: no test_dataloader / val_dataloader to take the test pipeline from')
        # the annotations are not needed to draw a heat map
        pipeline = [t for t in loader.dataset.pipeline
                    if str(t.get('type', '')).split('.')[-1] not in ('LoadAnnotations',)]
        self.pipeline = Compose(pipeline)
        meta = (ckpt.get('meta') or {}).get('dataset_meta') or {}
        classes = meta.get('classes')
        if classes is None:
            classes = loader.dataset.get('classes')
        if classes is None:
            dataset_cls = DATASETS.get(loader.dataset.type)
            classes = getattr(dataset_cls, 'METAINFO', {}).get('classes') if dataset_cls else None
        self.classes = list(classes) if classes else None
        if layer_path:
            self.target_layer, self.layer_name = resolve_module(self.model, layer_path), layer_path
        else:
            self.target_layer, self.layer_name = default_target_layer(self.model)

    def prepare(self, img_path: str):
        """``(normalised input (1, 3, H, W), RGB float image (H, W, 3) in [0, 1])``."""
        import numpy as np
        data = self.pipeline(dict(img_path=img_path))
        batch = self.model.data_preprocessor(dict(inputs=[data['inputs']], data_samples=[data['data_samples']]),
                                             False)
        bgr = data['inputs'].permute(1, 2, 0).numpy()
        rgb = bgr[..., ::-1].astype(np.float32) / 255.0  # LoadImageFromFile gives BGR
        return batch['inputs'], np.ascontiguousarray(rgb)

    def class_index(self, spec: Optional[str]) -> Optional[int]:
        if spec is None:
            return None
        if spec.lstrip('-').isdigit():
            return int(spec)
        if not self.classes or spec not in self.classes:
            raise ValueError(f'--target-class {spec!r} is not a class name of {self.name} '
                             f'(classes: {self.classes}); give an index instead')
        return self.classes.index(spec)

    def class_name(self, index: int) -> str:
        return self.classes[index] if self.classes and 0 <= index < len(self.classes) else str(index)


def _caption(panel, text: str):
    import cv2
    import numpy as np
    bar = np.full((22, panel.shape[1], 3), 255, dtype=np.uint8)
    cv2.putText(bar, text[:40], (3, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([bar, panel], axis=0)


def load_models(specs: Sequence[Tuple[str, str, Optional[str]]], names: Optional[Sequence[str]] = None,
                device: Optional[str] = None, cfg_options: Optional[dict] = None) -> List[LoadedModel]:
    """One :class:`LoadedModel` per ``(config, checkpoint, target layer)``, captioned ``names`` (default:
    "model 1", "model 2", ...), on ``device`` (default: CUDA when there is one)."""
    from projects.common.cli import default_device
    device = device or default_device()
    names = names or [f'model {i + 1}' for i in range(len(specs))]
    return [LoadedModel(cfg, ckpt, device, layer, name, cfg_options) for (cfg, ckpt, layer), name in zip(specs, names)]


def run_gradcam(models: Sequence[LoadedModel], images: Sequence[str], out_dir: str, target_class: Optional[str],
                method: str = 'gradcam', display_size: int = 256, save_raw: bool = False) -> List[dict]:
    import cv2
    import numpy as np
    import pytorch_grad_cam
    import torch
    from mmengine.utils import ProgressBar
    from pytorch_grad_cam.utils.image import show_cam_on_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    os.makedirs(out_dir, exist_ok=True)
    cam_cls = getattr(pytorch_grad_cam, METHODS[method])
    cams = [cam_cls(model=logits_module(m.model), target_layers=[m.target_layer]) for m in models]
    for m in models:
        print(f'{m.name}: {m.config} ({m.checkpoint}), explaining {m.layer_name} ({type(m.target_layer).__name__})')
    results = []
    progress = ProgressBar(len(images))
    for img_path in images:
        if not osp.isfile(img_path):
            raise FileNotFoundError(f'--img {img_path}: no such file')
        panels, record = [], dict(img=img_path, cams=[], labels=[])
        for m, cam in zip(models, cams):
            x, rgb = m.prepare(img_path)
            with torch.no_grad():
                logits = cam.model(x.to(next(m.model.parameters()).device))
            probs = logits.softmax(-1)[0]
            top1 = int(probs.argmax())
            target = m.class_index(target_class)
            target = top1 if target is None else target
            heat = cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])[0]
            if not heat.max() > 0:
                print(f'\nwarning: {m.name}: no region raises the score of {m.class_name(target)!r} on {img_path} '
                      '(the Grad-CAM map is all zero; an untrained model or another --target-class?)')
            overlay = show_cam_on_image(rgb, heat, use_rgb=True)
            if not panels:
                panels.append(_caption(cv2.resize((rgb * 255).astype(np.uint8), (display_size, display_size)),
                                       osp.basename(img_path)))
            text = f'{m.name}: {m.class_name(target)} p={float(probs[target]):.2f}'
            panels.append(_caption(cv2.resize(overlay, (display_size, display_size)), text))
            record['cams'].append(heat)
            record['labels'].append(dict(target=target, top1=top1, prob=float(probs[target])))
        canvas = np.concatenate(panels, axis=1)
        stem = osp.splitext(osp.basename(img_path))[0]
        out_path = osp.join(out_dir, f'{stem}_gradcam.png')
        cv2.imwrite(out_path, cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
        if save_raw:
            for i, heat in enumerate(record['cams']):
                np.save(osp.join(out_dir, f'{stem}_gradcam_model{i + 1}.npy'), heat.astype(np.float32))
        record['out'] = out_path
        results.append(record)
        progress.update()
    for cam in cams:
        cam.activations_and_grads.release()
    print(f'\nwrote {len(results)} image(s) to {out_dir}')
    return results
