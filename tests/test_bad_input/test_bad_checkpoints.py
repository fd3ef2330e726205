"""Checkpoints that are not checkpoints, malicious pickles and stored configs, checkpoints of another model, file
modes."""
import os
import os.path as osp

import pytest
import torch

from projects.common.checkpoint import (
    CheckpointFileError,
    NotACheckpointError,
    UnsafeCheckpointError,
    atomic_write_bytes,
    config_from_text,
    load_checkpoint_file,
)
from tests.helpers import ROOT, TINY_PRETRAIN, write_coco
from tests.test_bad_input.helpers import png_header, run_tool, run_tool_in_process

TINY_DET = osp.join(ROOT, 'configs/mask_rcnn/mask-rcnn_vit-tiny-p16-posfield_cpu-smoke_coco-format.py')
EXTRACT = 'tools/model_converters/extract_backbone.py'
DENSE_PROBE = 'tools/analysis/dense_probe.py'
DEMO_PRETRAIN = osp.join(ROOT, 'configs/demo/posfield_vit-mini-p16_demo-pool.py')


@pytest.mark.parametrize('content, what', [
    (b'\xff\xd8\xff\xe0\x00\x10JFIF\x00', 'it is a JPEG image'),
    (png_header(4, 4), 'it is a PNG image'),
    (b'epoch 3: loss 0.25\n', "it is a text file starting 'epoch 3: loss 0.25\\n'"),
    (b'', 'it is empty'),
])
def test_renamed_files_are_not_pytorch_checkpoints(tmp_path, content, what):
    path = tmp_path / 'model.pth'
    path.write_bytes(content)
    with pytest.raises(NotACheckpointError) as err:
        load_checkpoint_file(path)
    assert str(err.value) == (f'{path} is not a PyTorch checkpoint ({what}); expected a file written by '
                              'torch.save, e.g. a training checkpoint iter_N.pth')
    assert 'weights_only' not in str(err.value)


def test_truncated_checkpoint_is_named(tmp_path):
    torch.save({'w': torch.zeros(100)}, tmp_path / 'full.pth')
    (tmp_path / 'cut.pth').write_bytes((tmp_path / 'full.pth').read_bytes()[:200])
    with pytest.raises(NotACheckpointError, match=r'cut\.pth is not a PyTorch checkpoint or is truncated'):
        load_checkpoint_file(tmp_path / 'cut.pth')


def test_mmengine_load_paths_use_the_checked_loader(tmp_path):
    """load_from / --resume / init_cfg all go through mmengine's CheckpointLoader: same message there."""
    from mmengine.runner.checkpoint import _load_checkpoint
    (tmp_path / 'photo.pth').write_bytes(b'\xff\xd8\xff\xe0 JFIF')
    with pytest.raises(NotACheckpointError, match=r'photo\.pth is not a PyTorch checkpoint \(it is a JPEG image\)'):
        _load_checkpoint(str(tmp_path / 'photo.pth'))


class _SystemCall:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # what a malicious checkpoint does: call os.system at load time
        return os.system, (f'touch {self.marker}',)


def test_pickle_that_calls_os_system_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / 'PWNED'
    torch.save({'state_dict': {'w': torch.ones(1)}, 'x': _SystemCall(marker)}, tmp_path / 'evil.pth')
    with pytest.raises(UnsafeCheckpointError) as err:
        load_checkpoint_file(tmp_path / 'evil.pth')
    assert not marker.exists()
    msg = str(err.value)
    system = f'{os.system.__module__}.system'  # posix.system on Linux
    assert msg.startswith(f'{tmp_path / "evil.pth"}: refused to load: its pickle asks for {system}')
    assert 'weights_only' not in msg


class _GetAttr:
    def __init__(self, obj, name):
        self.obj, self.name = obj, name

    def __reduce__(self):
        return getattr, (self.obj, self.name)


def _history_buffer():
    from mmengine.logging.history_buffer import HistoryBuffer
    return HistoryBuffer


@pytest.mark.parametrize('chain, refused', [
    # HistoryBuffer.min is allowed; walking on to its module globals (os, builtins, ...) is not
    (lambda: _GetAttr(_GetAttr(_history_buffer(), 'min'), '__globals__'), "getattr(min, '__globals__')"),
    (lambda: _GetAttr(_history_buffer(), 'register_statistics'), "getattr(HistoryBuffer, 'register_statistics')"),
    (lambda: _GetAttr(_history_buffer(), '__init__'), "getattr(HistoryBuffer, '__init__')"),
    (lambda: _GetAttr(__import__('numpy').ndarray, 'tofile'), "getattr(ndarray, 'tofile')"),
])
def test_getattr_chains_through_allowlisted_classes_are_refused(tmp_path, chain, refused):
    torch.save({'x': chain()}, tmp_path / 'chain.pth')
    with pytest.raises(UnsafeCheckpointError, match=r'refused to load: its pickle asks for '
                                                    + refused.replace('(', r'\(').replace(')', r'\)')):
        load_checkpoint_file(tmp_path / 'chain.pth')


def test_only_the_narrow_getattr_is_allowlisted_and_mmengine_state_still_loads(tmp_path):
    import numpy as np
    from mmengine.logging import MessageHub
    from mmengine.runner.checkpoint import save_checkpoint
    assert getattr not in torch.serialization.get_safe_globals()
    hub = MessageHub.get_instance('bad_input_hub')
    hub.update_scalar('train/loss', np.float64(0.25))
    save_checkpoint({'message_hub': hub.state_dict(), 'state_dict': {'w': torch.ones(1)}}, str(tmp_path / 'ok.pth'))
    loaded = load_checkpoint_file(tmp_path / 'ok.pth')
    buffer = loaded['message_hub']['log_scalars']['train/loss']
    assert buffer.statistics('mean') == 0.25 and buffer.statistics('current') == 0.25


def test_stored_config_of_a_shipped_config_round_trips_without_executing(tmp_path):
    """meta.cfg is what mmengine writes (cfg.pretty_text); parsing it gives the config mmengine would execute."""
    from mmengine.config import Config
    cfg = Config.fromfile(DEMO_PRETRAIN)
    torch.save({'state_dict': {'w': torch.ones(1)}, 'meta': {'cfg': cfg.pretty_text}}, tmp_path / 'iter_4.pth')
    path = str(tmp_path / 'iter_4.pth')
    stored = config_from_text(load_checkpoint_file(path)['meta']['cfg'], path)
    assert stored.to_dict() == cfg.to_dict()
    assert stored.custom_imports.imports == ['projects.posfield'] and stored.filename == path


def _malicious_configs(marker):
    return [(f"import os\nos.system('touch {marker}')", 'line 1) has an import statement'),
            (f"x = __import__('os').system('touch {marker}')", "line 1) has a call to __import__('os').system()"),
            (f"x = dict(a=open('{marker}', 'w'))", 'line 1) has a call to open()'),
            ('a = 1\nx = ().__class__', 'line 2) has attribute access ().__class__'),
            ("custom_imports = dict(imports=['antigravity'])", 'has custom_imports of modules outside projects.*')]


@pytest.mark.parametrize('case', range(5), ids=['import', 'dunder-import', 'open', 'attribute', 'custom-imports'])
def test_stored_config_with_code_is_refused_and_runs_nothing(tmp_path, case):
    marker = tmp_path / 'X'
    text, construct = _malicious_configs(marker)[case]
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.ones(1)}, 'meta': {'cfg': text}}, path)
    with pytest.raises(CheckpointFileError) as err:
        config_from_text(load_checkpoint_file(path)['meta']['cfg'], str(path))
    msg = str(err.value)
    assert msg.startswith(f'{path}: the config stored in the checkpoint (meta.cfg, ') and construct in msg
    assert 'parsed, never executed' in msg and 'pass the pre-training config file with --config instead' in msg
    assert not marker.exists()


@pytest.mark.parametrize('umask, mode', [(0o022, 0o644), (0o027, 0o640)])
def test_atomic_writes_respect_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_bytes(b'{}', tmp_path / 'metrics.json')
        from mmengine.runner.checkpoint import save_checkpoint
        save_checkpoint({'state_dict': {'w': torch.ones(1)}}, str(tmp_path / 'iter_1.pth'))
    finally:
        os.umask(old)
    assert os.stat(tmp_path / 'metrics.json').st_mode & 0o777 == mode
    assert os.stat(tmp_path / 'iter_1.pth').st_mode & 0o777 == mode


# ----- tools ------------------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def coco_root(tmp_path_factory):
    return write_coco(tmp_path_factory.mktemp('coco') / 'coco', n_train=1, n_val=1) + '/'


def _test_tool(coco_root, checkpoint, tmp_path):
    ann = coco_root + 'annotations/instances_val.json'
    return run_tool(['tools/test.py', TINY_DET, str(checkpoint), '--work-dir', str(tmp_path / 'wd'),
                     '--out', str(tmp_path / 'metrics.json'), '--cfg-options',
                     f'test_dataloader.dataset.data_root={coco_root}', f'test_evaluator.ann_file={ann}'])


def test_tool_on_a_jpeg_named_pth(tmp_path):
    (tmp_path / 'pretrain.pth').write_bytes(b'\xff\xd8\xff\xe0 JFIF')
    rc, log = run_tool([EXTRACT, str(tmp_path / 'pretrain.pth'), str(tmp_path / 'bb.pth')])
    assert rc == 1, log[-3000:]
    assert f'error: {tmp_path / "pretrain.pth"} is not a PyTorch checkpoint (it is a JPEG image)' in log
    assert 'weights_only' not in log and 'Traceback' not in log and not (tmp_path / 'bb.pth').exists()


def test_test_tool_refuses_a_pretraining_checkpoint(coco_root, tmp_path):
    state = {'teacher.module.backbone.cls_token': torch.zeros(1, 1, 64),
             'backbone.cls_token': torch.zeros(1, 1, 64),
             'head.prototypes': torch.zeros(8, 64)}
    torch.save({'state_dict': state}, tmp_path / 'pretrain.pth')
    rc, log = _test_tool(coco_root, tmp_path / 'pretrain.pth', tmp_path)
    assert rc == 1, log[-3000:]
    assert f'{tmp_path / "pretrain.pth"} does not fit the model' in log and 'It is a pre-training checkpoint' in log
    assert 'tensors missing: backbone.' in log and 'not in the model (3): ' in log
    assert 'teacher.module.backbone.cls_token' in log and 'head.prototypes' in log
    assert not (tmp_path / 'metrics.json').exists()


def test_test_tool_refuses_a_detector_of_another_width(tmp_path):
    """The check tools/test.py runs before testing (its exit path is shown with the pre-training checkpoint)."""
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import projects.posfield.det  # noqa: F401
    from projects.common.backbone_loader import CheckpointMismatchError, check_checkpoint_fits_model
    init_default_scope('mmdet')
    cfg = Config.fromfile(TINY_DET)
    model = MODELS.build(cfg.model)
    from projects.posfield.models.utils.archs import vit_arch
    cfg.model.backbone.arch = dict(vit_arch(cfg.model.backbone.arch), embed_dims=32,
                                   feedforward_channels=64)  # half the config's width
    cfg.model.neck.update(backbone_channel=32, in_channels=[8, 16, 32, 32])
    torch.save({'state_dict': MODELS.build(cfg.model).state_dict()}, tmp_path / 'narrow.pth')
    with pytest.raises(CheckpointMismatchError) as err:
        check_checkpoint_fits_model(model, str(tmp_path / 'narrow.pth'))
    msg = str(err.value)
    assert msg.startswith(f'{tmp_path / "narrow.pth"} does not fit the model')
    assert 'shape mismatches' in msg and 'backbone.patch_embed.projection.weight: backbone (64, 3, 16, 16), ' \
                                           'checkpoint (32, 3, 16, 16)' in msg
    torch.save({'state_dict': model.state_dict()}, tmp_path / 'same.pth')
    assert len(check_checkpoint_fits_model(model, str(tmp_path / 'same.pth'))) == len(model.state_dict())


def test_test_tool_refuses_a_detector_with_nan_weights(coco_root, tmp_path):
    """A diverged detector would be evaluated to mmdet's "results of the whole dataset is empty" and "metrics": {}."""
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    import projects.posfield.det  # noqa: F401
    with DefaultScope.overwrite_default_scope('mmdet'):
        state = MODELS.build(Config.fromfile(TINY_DET).model).state_dict()
    names = [k for k, v in state.items() if v.is_floating_point() and v.numel() > 1]
    state[names[3]].view(-1)[:2] = float('nan')
    state[names[10]].view(-1)[0] = float('inf')
    torch.save({'state_dict': state, 'meta': {}}, tmp_path / 'diverged.pth')
    ann = coco_root + 'annotations/instances_val.json'
    rc, log = run_tool_in_process('test', [TINY_DET, str(tmp_path / 'diverged.pth'), '--work-dir', str(tmp_path / 'wd'),
                                           '--out', str(tmp_path / 'metrics.json'), '--cfg-options',
                                           f'test_dataloader.dataset.data_root={coco_root}',
                                           f'test_evaluator.ann_file={ann}'])
    assert rc == 1, log[-3000:]
    n3, n10 = state[names[3]].numel(), state[names[10]].numel()
    assert log.endswith(
        f'error: {tmp_path / "diverged.pth"}: 2 of {len(state)} tensors hold non-finite values (NaN or Inf), so the '
        'model cannot give usable predictions (did the training run diverge? use an earlier checkpoint). First: '
        f'{names[3]} (2 NaN, 0 Inf of {n3} values); {names[10]} (0 NaN, 1 Inf of {n10} values)'), log[-3000:]
    assert not (tmp_path / 'metrics.json').exists()


def test_extract_backbone_refuses_a_dict_of_two_tensors(tmp_path):
    torch.save({'foo': torch.zeros(3), 'bar': torch.ones(2)}, tmp_path / 'foobar.pth')
    rc, log = run_tool([EXTRACT, str(tmp_path / 'foobar.pth'), str(tmp_path / 'bb.pth')])
    assert rc == 1 and not (tmp_path / 'bb.pth').exists()
    assert (f'error: {tmp_path / "foobar.pth"}: the selected tensors (backbone-only: 2 tensors, e.g. foo, bar) are '
            'not a ViT backbone: no patch_embed.projection.weight, layers.0.attn.qkv.weight. Expected a '
            'position-field pre-training checkpoint') in log


def test_extract_backbone_refuses_an_efficientnet_checkpoint(tmp_path):
    from mmpretrain.models import EfficientNet
    net = EfficientNet(arch='b0')
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in net.state_dict().items()}}, tmp_path / 'simclr.pth')
    rc, log = run_tool([EXTRACT, str(tmp_path / 'simclr.pth'), str(tmp_path / 'bb.pth')])
    assert rc == 1 and not (tmp_path / 'bb.pth').exists()
    n = len(net.state_dict())
    assert f'(backbone.*: {n} tensors, e.g. layers.0.conv.weight, layers.0.bn.weight' in log
    assert 'a convolutional network such as an EfficientNet or a ResNet' in log and 'are not a ViT backbone' in log


def test_extract_backbone_key_on_a_backbone_only_file_is_an_error(tmp_path):
    bare = {'patch_embed.projection.weight': torch.zeros(8, 3, 4, 4), 'layers.0.attn.qkv.weight': torch.zeros(24, 8)}
    torch.save({'state_dict': bare}, tmp_path / 'bare.pth')
    rc, log = run_tool([EXTRACT, str(tmp_path / 'bare.pth'), str(tmp_path / 'out.pth'), '--key', 'student'])
    assert rc == 1 and not (tmp_path / 'out.pth').exists()
    assert (f'error: --key student: {tmp_path / "bare.pth"} has no teacher/student networks (no '
            'teacher.module.backbone.* keys)') in log
    rc, message = run_tool_in_process('model_converters/extract_backbone', [str(tmp_path / 'bare.pth'),
                                                                         str(tmp_path / 'out.pth')])
    assert rc == 0 and torch.load(tmp_path / 'out.pth', weights_only=True)['meta']['selected'] == 'backbone-only'
    assert set(torch.load(tmp_path / 'out.pth', weights_only=True)['state_dict']) == set(bare)


def test_extracted_backbone_loads_in_the_analysis_loader_and_respects_the_umask(tiny_ssl_ckpt, tmp_path):
    """Every backbone file the repository writes must load: extract_backbone.py keeps the [CLS] token."""
    from mmengine.registry import DefaultScope

    from projects.common.backbone_loader import load_backbone
    model = tiny_ssl_ckpt['model']
    out = tmp_path / 'backbone.pth'
    rc, log = run_tool(['bash', '-c', 'umask 022 && exec "$0" "$@"', __import__('sys').executable,
                        osp.join(ROOT, EXTRACT), tiny_ssl_ckpt['checkpoint'], str(out)])
    assert rc == 0, log[-2000:]
    assert os.stat(out).st_mode & 0o777 == 0o644
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        loaded = load_backbone(TINY_PRETRAIN, str(out))
    assert torch.equal(loaded.backbone.cls_token, model.state_dict()['teacher.module.backbone.cls_token'])
    assert 'left at init' not in loaded.source  # nothing missing: every tensor came from the file


@pytest.mark.parametrize('case', [0, 2], ids=['import', 'open'])
def test_dense_probe_on_a_checkpoint_whose_config_runs_code(coco_root, tmp_path, case):
    marker = tmp_path / 'X'
    text, construct = _malicious_configs(marker)[case]
    torch.save({'state_dict': {'w': torch.ones(1)}, 'meta': {'cfg': text}}, tmp_path / 'evil.pth')
    out = tmp_path / 'probe.json'
    rc, log = run_tool([DENSE_PROBE, str(tmp_path / 'evil.pth'), '--coco', coco_root, '--out', str(out)])
    assert rc == 1, log[-3000:]
    assert f'dense_probe.py: error: {tmp_path / "evil.pth"}: the config stored in the checkpoint' in log
    assert construct in log and 'with --config instead' in log and 'Traceback' not in log
    assert not marker.exists() and not out.exists()
