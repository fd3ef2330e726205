"""k-NN (and optionally linear-probe) evaluation of the pre-training backbone while it trains."""
from typing import Optional, Sequence, Tuple

import torch
from mmengine.dist import barrier, is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS

from projects.analysis.features import extract_features, feature_variant, labelled_loaders
from projects.analysis.knn import knn_classify
from projects.analysis.linear_probe import train_linear_probe
from projects.common.backbone_loader import IMAGENET_MEAN, IMAGENET_STD

from .canvas import canvas_box_for


@HOOKS.register_module()
class KNNEvalHook(Hook):
    """Evaluate the (teacher) backbone by weighted k-NN on a labelled set every ``interval`` epochs/iterations.

    The hook builds its own loaders from ``train_dataset`` / ``val_dataset`` (mmpretrain dataset configs,
    e.g. ``dict(type='CustomDataset', data_root='data/pets/train')``; the evaluation pipeline, resize +
    centre crop to ``img_size``, is added when they have none), extracts frozen features on the main
    process, and logs ``knn/top1``, ``knn/top5`` (and ``linear/top1`` with ``linear_probe=True``) to the
    log, the visualizer backends and the message hub. Other ranks wait at a barrier.

    Args:
        interval: evaluate every ``interval`` epochs (epoch-based loop) or iterations (``by_epoch=False``).
        by_epoch: None follows the training loop (iteration-based loops count iterations).
        key: ``'teacher'`` (``model.teacher.module.backbone``, the EMA teacher) or ``'student'``
            (``model.backbone``).
        k, temperature: DINO's weighted k-NN (k=20, T=0.07).
        feature: ``'cls'``, ``'avgpool'`` or ``'cls_avgpool'``.
        max_per_class: cap on training samples per class (a quicker, noisier estimate).
        mean, std, bgr_to_rgb: image normalisation; None takes the model's data preprocessor.
        placement: where the (un-cropped) evaluation images sit on a position-field backbone's canvas:
            ``'mean'`` (default: the mean pre-training placement of the config's ``PosFieldMultiCrop``, Beta(2, 5)
            -> a centred window of side 2/7, near what the backbone saw in training) or ``'whole'`` (the whole
            canvas, as the detector places its input). Other backbones ignore it.
        box: an explicit canvas window ``(x0, y0, x1, y1)`` instead of ``placement``.
        at_end: also evaluate after the last iteration.
    """

    priority = 'LOW'

    def __init__(self, train_dataset: dict, val_dataset: dict, interval: int = 1, by_epoch: Optional[bool] = None,
                 key: str = 'teacher', k: int = 20, temperature: float = 0.07, feature: str = 'cls',
                 img_size: int = 224, batch_size: int = 64, num_workers: int = 2,
                 max_per_class: Optional[int] = None, linear_probe: bool = False, linear_probe_epochs: int = 50,
                 mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None,
                 bgr_to_rgb: Optional[bool] = None, placement: str = 'mean',
                 box: Optional[Tuple[float, float, float, float]] = None, at_end: bool = True, prefix: str = 'knn'):
        if key not in ('teacher', 'student'):
            raise ValueError(f"KNNEvalHook key must be 'teacher' or 'student', got {key!r}")
        if interval < 1:
            raise ValueError(f'KNNEvalHook interval must be >= 1, got {interval}')
        for name, ds in (('train_dataset', train_dataset), ('val_dataset', val_dataset)):
            if not isinstance(ds, dict) or 'type' not in ds:
                raise ValueError(f'KNNEvalHook {name} must be a dataset config dict with a `type`, got {ds!r}')
        feature_variant({'cls': torch.zeros(1, 1), 'avgpool': torch.zeros(1, 1)}, feature)  # validates the name
        if placement not in ('mean', 'whole'):
            raise ValueError(f"KNNEvalHook placement must be 'mean' or 'whole', got {placement!r}")
        self.placement = placement
        self.train_dataset, self.val_dataset = dict(train_dataset), dict(val_dataset)
        self.interval, self.by_epoch, self.key = interval, by_epoch, key
        self.k, self.temperature, self.feature = k, temperature, feature
        self.img_size, self.batch_size, self.num_workers = img_size, batch_size, num_workers
        self.max_per_class = max_per_class
        self.linear_probe, self.linear_probe_epochs = linear_probe, linear_probe_epochs
        self.mean, self.std, self.bgr_to_rgb, self.box = mean, std, bgr_to_rgb, box
        self.at_end, self.prefix = at_end, prefix
        self._loaders = None
        self._num_classes = None
        self._last_iter = None
        self.last_results = None

    # ------------------------------------------------------------------ helpers
    def _build_loaders(self):
        if self._loaders is None:
            train, val, self._num_classes = labelled_loaders(self.train_dataset, self.val_dataset, self.img_size,
                                                             self.batch_size, self.num_workers, self.max_per_class)
            self._loaders = (train, val)
        return self._loaders

    def _backbone(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if self.key == 'teacher':
            teacher = getattr(model, 'teacher', None)
            if teacher is not None and hasattr(getattr(teacher, 'module', None), 'backbone'):
                return model.teacher.module.backbone, model
            print_log(f'KNNEvalHook: {type(model).__name__} has no teacher.module.backbone; using model.backbone',
                      logger='current')
        return model.backbone, model

    def _normalisation(self, model):
        pre = getattr(model, 'data_preprocessor', None)
        mean = self.mean if self.mean is not None else (
            pre.mean.flatten().tolist() if getattr(pre, 'mean', None) is not None else IMAGENET_MEAN)
        std = self.std if self.std is not None else (
            pre.std.flatten().tolist() if getattr(pre, 'std', None) is not None else IMAGENET_STD)
        bgr = self.bgr_to_rgb if self.bgr_to_rgb is not None else bool(getattr(pre, '_channel_conversion', True))
        return mean, std, bgr

    def canvas_box(self, cfg) -> Optional[Tuple[float, float, float, float]]:
        """The canvas window of the evaluation images for the training config ``cfg`` (None: whole canvas)."""
        return tuple(self.box) if self.box is not None else canvas_box_for(cfg, self.placement)

    def evaluate(self, runner, step: Optional[int] = None) -> Optional[dict]:
        """Run the evaluation now (``step``: completed training iterations, logged with the metrics);
        returns the metrics on the main process (None elsewhere)."""
        step = runner.iter if step is None else step
        results = None
        if is_main_process():
            backbone, model = self._backbone(runner)
            mean, std, bgr = self._normalisation(model)
            train_loader, val_loader = self._build_loaders()
            kw = dict(mean=mean, std=std, bgr_to_rgb=bgr, box=self.canvas_box(runner.cfg), progress=False)
            tr = extract_features(backbone, train_loader, **kw)
            va = extract_features(backbone, val_loader, **kw)
            xt, xv = feature_variant(tr, self.feature), feature_variant(va, self.feature)
            dev = next(backbone.parameters()).device
            acc = knn_classify(xt.to(dev), tr['labels'], xv.to(dev), va['labels'], self._num_classes, self.k,
                               self.temperature)
            results = {f'{self.prefix}/top1': acc['top1'], f'{self.prefix}/top5': acc['top5']}
            if self.linear_probe:
                lp = train_linear_probe(xt, tr['labels'], xv, va['labels'], self._num_classes,
                                        epochs=self.linear_probe_epochs, device=str(dev))
                results['linear/top1'] = lp['top1']
            for name, value in results.items():
                runner.message_hub.update_scalar(name, value)
            runner.visualizer.add_scalars(results, step=step)
            print_log(f'KNNEvalHook ({self.key}, k={self.k}, T={self.temperature}, {self.feature}) at iter {step}: '
                      + ', '.join(f'{k}={v:.2f}' for k, v in results.items()), logger='current')
            self.last_results = results
        barrier()
        self._last_iter = step
        return results

    def _epoch_based(self, runner) -> bool:
        if self.by_epoch is not None:
            return self.by_epoch
        return 'Epoch' in type(runner.train_loop).__name__

    # ------------------------------------------------------------------ hook points
    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not self._epoch_based(runner) and self.every_n_train_iters(runner, self.interval):
            self.evaluate(runner, runner.iter + 1)  # the loop counts this iteration after the hooks

    def after_train_epoch(self, runner) -> None:
        if self._epoch_based(runner) and self.every_n_epochs(runner, self.interval):
            self.evaluate(runner)

    def after_train(self, runner) -> None:
        if self.at_end and self._last_iter != runner.iter:
            self.evaluate(runner)
