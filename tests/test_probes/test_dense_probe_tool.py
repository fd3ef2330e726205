"""tools/analysis/dense_probe.py loads every backbone file the repository writes (pre-training checkpoint, with
its config read from the checkpoint; extract_backbone.py output; a config for random init) and writes the rows."""
import json

import pytest
import torch

from projects.common.errors import BadInputError
from projects.probes.probe_run import format_rows, load_probed_backbone
from tests.helpers import TINY_PRETRAIN, load_tool, write_coco


def _tool(path):
    return load_tool(path)


@pytest.fixture(scope='module')
def checkpoints(tiny_ssl_ckpt, tmp_path_factory):
    """The tiny PosFieldSSL checkpoint (with mmengine's meta.cfg, as tools/train.py writes it) and its extracted
    backbone."""
    backbone = str(tmp_path_factory.mktemp('probe_ckpt') / 'backbone.pth')
    _tool('tools/model_converters/extract_backbone.py').main([tiny_ssl_ckpt['checkpoint'], backbone])
    return dict(ckpt=tiny_ssl_ckpt['checkpoint'], backbone=backbone, model=tiny_ssl_ckpt['model'])


@pytest.fixture(scope='module')
def coco(tmp_path_factory):
    return write_coco(tmp_path_factory.mktemp('probe_coco'), n_train=4, n_val=2, size=64)


def _run(args):
    return _tool('tools/analysis/dense_probe.py').main(args)


def test_probe_of_pretraining_checkpoint_with_floors(checkpoints, coco, tmp_path):
    out = tmp_path / 'probe.json'
    res = _run([checkpoints['ckpt'], '--coco', coco, '--out', str(out), '--floors', '--img-size', '32',
                '--crop-size', '16', '--epochs', '2'])
    saved = json.loads(out.read_text())
    assert saved['rows'] == json.loads(json.dumps(res['rows']))
    assert [r['name'] for r in saved['rows']] == ['iter_6', 'all background', 'raw pixels']
    ours, background, raw = saved['rows']
    assert ours['with_cls'] is True and 'teacher' in ours['source']
    assert ours['feature_dims'] == 64 and raw['feature_dims'] == 3 * 8 * 8
    for r in (ours, raw):
        assert 0.0 <= r['patch']['miou'] <= 100.0 and 0.0 <= r['crop_knn']['top1'] <= 100.0
    assert saved['data']['classes'] == ['ellipse', 'rectangle', 'triangle'] and saved['data']['val']['images'] == 2
    # the localisation probe runs on every backbone row; the all-background row carries the constant predictor
    for r in (ours, raw):
        assert 0.0 <= r['box']['mean_iou'] <= 100.0 and 0.0 <= r['box']['iou50_rate'] <= 100.0
        assert r['box']['pairs']['val'] == saved['data']['val']['box_pairs'] > 0
    assert background['box']['note'].startswith('the mean training targets') and len(background['box']['targets']) == 4
    assert 'box IoU' in format_rows(saved)


def test_teacher_features_are_the_ones_probed(checkpoints, coco):
    """The loaded backbone equals the checkpoint's teacher, not its student."""
    tool = _tool('tools/analysis/dense_probe.py')
    args = tool.parse_args([checkpoints['ckpt'], '--coco', coco, '--out', 'unused.json'])
    loaded, _, with_cls = load_probed_backbone(args.model, args.config, args.key)
    prefix = 'teacher.module.backbone.'
    teacher = {k[len(prefix):]: v for k, v in checkpoints['model'].state_dict().items() if k.startswith(prefix)}
    student = {k[len('backbone.'):]: v for k, v in checkpoints['model'].state_dict().items()
               if k.startswith('backbone.')}
    assert teacher and with_cls
    state = loaded.backbone.state_dict()
    for k, v in teacher.items():
        assert torch.equal(state[k], v), k
    assert any(not torch.equal(state[k], v) for k, v in student.items())


def test_probe_of_extracted_backbone_keeps_its_cls_unless_told(checkpoints, coco, tmp_path):
    out = tmp_path / 'probe.json'
    common = ['--config', TINY_PRETRAIN, '--coco', coco, '--img-size', '32', '--crop-size', '16', '--epochs', '2',
              '--name', 'extracted']
    _run([checkpoints['backbone'], '--out', str(out)] + common)  # extract_backbone.py keeps the [CLS] token
    row = json.loads(out.read_text())['rows'][0]
    assert row['name'] == 'extracted' and row['with_cls'] is True
    _run([checkpoints['backbone'], '--out', str(out), '--without-cls'] + common)
    assert json.loads(out.read_text())['rows'][0]['with_cls'] is False


def test_backbone_file_without_cls_runs_without_it(checkpoints, coco, tmp_path):
    """Backbone files written before extract_backbone.py kept the [CLS] token still probe (without it)."""
    import torch
    ckpt = torch.load(checkpoints['backbone'], weights_only=True)
    ckpt['state_dict'] = {k: v for k, v in ckpt['state_dict'].items() if 'cls_' not in k}
    old = tmp_path / 'old_backbone.pth'
    torch.save(ckpt, old)
    out = tmp_path / 'probe.json'
    _run([str(old), '--config', TINY_PRETRAIN, '--coco', coco, '--out', str(out), '--img-size', '32',
          '--crop-size', '16', '--epochs', '1'])
    assert json.loads(out.read_text())['rows'][0]['with_cls'] is False


def test_extracted_backbone_finds_its_config_through_the_source_checkpoint(checkpoints, coco, tmp_path):
    out = tmp_path / 'probe.json'
    _run([checkpoints['backbone'], '--coco', coco, '--out', str(out), '--img-size', '32', '--crop-size', '16',
          '--epochs', '1'])
    assert json.loads(out.read_text())['rows'][0]['with_cls'] is True


def test_no_cls_encoder_equals_the_patch_tokens_of_a_cls_free_forward(checkpoints):
    """Running without [CLS] is what the detector does; with [CLS] the tokens differ (attention mixes it in)."""
    from projects.common.backbone_loader import load_backbone
    from projects.probes import backbone_patch_encoder
    loaded = load_backbone(TINY_PRETRAIN, checkpoints['ckpt'])
    bb = loaded.backbone
    x = torch.randn(2, 3, 32, 32)
    no_cls = backbone_patch_encoder(bb, with_cls=False)(x)
    patches, hw = bb.patch_embed(x)
    tokens = bb.pre_norm(patches + bb.pos_field.for_whole_image(2, hw))
    for layer in bb.layers:
        tokens = layer(tokens)
    assert torch.allclose(no_cls, bb.ln1(tokens), atol=1e-5)
    assert not torch.allclose(no_cls, backbone_patch_encoder(bb, with_cls=True)(x), atol=1e-3)


def test_random_init_from_config_depends_on_seed(coco, tmp_path):
    a, b = tmp_path / 'a.json', tmp_path / 'b.json'
    common = ['--coco', coco, '--img-size', '32', '--crop-size', '16', '--epochs', '1']
    ra = _run([TINY_PRETRAIN, '--out', str(a), '--seed', '0'] + common)
    rb = _run([TINY_PRETRAIN, '--out', str(b), '--seed', '0'] + common)
    assert ra['rows'][0]['name'] == 'random init' and ra['rows'][0]['patch'] == rb['rows'][0]['patch']
    rc = _run([TINY_PRETRAIN, '--out', str(a), '--seed', '0', '--without-cls'] + common)
    assert ra['rows'][0]['with_cls'] is True and rc['rows'][0]['with_cls'] is False


def test_checkpoint_without_config_is_a_clear_error(checkpoints, coco, tmp_path):
    bare = tmp_path / 'bare.pth'
    torch.save({'state_dict': torch.load(checkpoints['backbone'])['state_dict']}, bare)
    with pytest.raises(SystemExit, match='--config'):
        _run([str(bare), '--coco', coco, '--out', str(tmp_path / 'x.json')])


def test_lrs_sets_every_linear_probes_grid(coco, tmp_path):
    """--lrs: each linear probe (patch, foreground, box) tries exactly that grid and picks one of it; the default
    grid is PROBE_LRS; a non-positive rate is refused by name."""
    from projects.probes.dense import PROBE_LRS
    common = [TINY_PRETRAIN, '--coco', coco, '--img-size', '32', '--crop-size', '16', '--epochs', '1']
    grid = [3e-4, 5e-3]
    res = _run(common + ['--out', str(tmp_path / 'a.json'), '--lrs', *map(str, grid)])
    row = res['rows'][0]
    assert res['lrs'] == grid
    for probe in ('patch', 'foreground', 'box'):
        assert [r['lr'] for r in row[probe]['per_lr']] == grid and row[probe]['lr'] in grid
    default = _run(common + ['--out', str(tmp_path / 'b.json')])
    assert default['lrs'] == list(PROBE_LRS)
    assert [r['lr'] for r in default['rows'][0]['box']['per_lr']] == list(PROBE_LRS)
    with pytest.raises(SystemExit):
        _run(common + ['--out', str(tmp_path / 'c.json'), '--lrs', '0'])


def _probe_json(path, name, hold, val):
    """A dense_probe.py output with one learned row on a two-rate grid and the constant floor row."""
    grid = (0.001, 0.01)
    learned = dict(name=name, patch=dict(miou=val[int(hold[1] > hold[0])], lr=grid[int(hold[1] > hold[0])],
                                         per_lr=[dict(lr=lr, holdout_miou=h, val_miou=v)
                                                 for lr, h, v in zip(grid, hold, val)]))
    const = dict(name='raw pixels', patch=dict(miou=11.0, lr=0.01, per_lr=[dict(lr=lr, holdout_miou=h, val_miou=v)
                                                                  for lr, h, v in zip(grid, (1.0, 9.0), (10.0, 11.0))]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(rows=[learned, const])))
    return str(path)


def test_probe_table_reads_every_file_at_one_learning_rate(tmp_path, capsys):
    """Run a picks 0.01 on its own hold-out by a hair, run b picks 0.001 clearly: the table reads both backbones
    at 0.001 (best mean hold-out), names rows by folder, keeps the floor row's own choice (0.01, although it is
    the only row preferring it clearly) and writes the same table as JSON."""
    a = _probe_json(tmp_path / 'run_a' / 'probe.json', 'posfield', hold=(10.0, 10.1), val=(14.0, 11.0))
    b = _probe_json(tmp_path / 'run_b' / 'probe.json', 'dinov2-dagger', hold=(12.0, 11.0), val=(13.0, 12.0))
    out = tmp_path / 'table.json'
    table = load_tool('tools/analysis/probe_table.py').main([a, b, '--out', str(out)])
    assert table['shared_lr'] == {'patch': 0.001}
    by = {r['name']: r for r in table['rows']}
    assert by['run_a: posfield']['patch']['miou'] == 14.0 and by['run_b: dinov2-dagger']['patch']['miou'] == 13.0
    assert by['run_a: raw pixels']['patch']['miou'] == 11.0 and by['run_a: raw pixels']['patch']['lr'] == 0.01
    printed = capsys.readouterr().out
    assert 'patch 0.001' in printed and 'run_a: posfield' in printed
    assert json.loads(out.read_text()) == json.loads(json.dumps(table))


def test_probe_table_names_a_file_that_is_not_a_probe_output(tmp_path):
    bad = tmp_path / 'other.json'
    bad.write_text(json.dumps(dict(metrics={})))
    good = _probe_json(tmp_path / 'run_a' / 'probe.json', 'posfield', hold=(1.0, 2.0), val=(1.0, 2.0))
    with pytest.raises(BadInputError, match='other.json: not a tools/analysis/dense_probe.py output'):
        load_tool('tools/analysis/probe_table.py').main([good, str(bad)])
    other_grid = tmp_path / 'run_c' / 'probe.json'
    other_grid.parent.mkdir()
    other_grid.write_text(json.dumps(dict(rows=[dict(name='x', patch=dict(miou=1.0, per_lr=[
        dict(lr=0.5, holdout_miou=1.0, val_miou=1.0)]))])))
    with pytest.raises(BadInputError, match='one learning-rate grid'):
        load_tool('tools/analysis/probe_table.py').main([good, str(other_grid)])
