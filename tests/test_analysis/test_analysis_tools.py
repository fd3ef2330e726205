"""Each tools/analysis tool runs end to end on a tiny checkpoint on CPU and writes its files."""
import json
import os.path as osp

import numpy as np
import pytest
from PIL import Image


def _png_varies(path):
    arr = np.asarray(Image.open(path).convert('RGB'), dtype=np.float64)
    return arr.std() > 1.0


def test_attention_maps_two_checkpoints(load_tool, tiny_ssl_ckpt, plain_vit, image_dir, tmp_path):
    tool = load_tool('attention_maps')
    out = tmp_path / 'maps'
    summary = tool.main([tiny_ssl_ckpt['config'], tiny_ssl_ckpt['checkpoint'], '--config2', plain_vit['config'],
                         '--checkpoint2', plain_vit['checkpoint'], '--labels', 'posfield', 'plain',
                         '--images', image_dir, '--query-patch', '1', '2', '--query-patch', '3', '3',
                         '--device', 'cpu', '--out-dir', str(out)])
    data = json.loads((out / 'attention_maps.json').read_text())
    assert set(data) >= {'layer', 'placement', 'models', 'images', 'npz'}
    assert [m['label'] for m in data['models']] == ['posfield', 'plain']
    assert data['models'][0]['grid'] == [8, 8] and data['models'][1]['grid'] == [4, 4]  # each its own img_size
    assert data['models'][0]['query_patches'] == [[1, 2], [3, 3]]
    assert len(data['images']) == 3
    for im in data['images']:
        assert osp.isfile(im['png']) and _png_varies(im['png'])
    maps = np.load(out / 'attention_maps.npz')
    assert maps['0_cls'].shape == (3, 2, 8, 8) and maps['0_query'].shape == (3, 2, 8, 8)
    assert maps['0_cls'].std() > 0  # the heat maps are not constant
    mass = maps['0_cls'].sum((2, 3))  # [CLS] attention on the patches: a share of a softmax row
    assert np.all(mass > 0) and np.all(mass <= 1 + 1e-5)
    assert summary['models'][1]['heads'] == 2


def test_attention_maps_rejects_bad_arguments(load_tool, tiny_ssl_ckpt, image_dir, tmp_path):
    tool = load_tool('attention_maps')
    base = [tiny_ssl_ckpt['config'], tiny_ssl_ckpt['checkpoint'], '--images', image_dir, '--device', 'cpu',
            '--out-dir', str(tmp_path)]
    with pytest.raises(SystemExit):
        tool.parse_args(base + ['--config2', tiny_ssl_ckpt['config']])  # no --checkpoint2
    with pytest.raises(ValueError, match='outside the 8x8 patch grid'):
        tool.main(base + ['--query-patch', '8', '0'])
    with pytest.raises(FileNotFoundError, match='missing.jpg'):
        tool.main(base[:2] + ['--images', str(tmp_path / 'missing.jpg')])


def test_attention_stats_nmi_and_distance(load_tool, tiny_ssl_ckpt, coco_set, tmp_path):
    tool = load_tool('attention_stats')
    out = tmp_path / 'stats'
    summary = tool.main([tiny_ssl_ckpt['config'], tiny_ssl_ckpt['checkpoint'], '--compare', tiny_ssl_ckpt['config'],
                         tiny_ssl_ckpt['checkpoint'], '--labels', 'teacher-a', 'teacher-b', '--ann-file',
                         coco_set['ann_file'], '--img-dir', coco_set['img_dir'], '--device', 'cpu',
                         '--out-dir', str(out)])
    data = json.loads((out / 'attention_stats.json').read_text())
    assert set(data['models']) == {'teacher-a', 'teacher-b'}
    res = data['models']['teacher-a']
    assert set(res) >= {'mean_attention_distance', 'nmi', 'source', 'num_images'}
    dist = np.asarray(res['mean_attention_distance']['per_layer_head'])
    assert dist.shape == (2, 2)  # 2 blocks x 2 heads
    assert np.all(dist > 0) and np.all(dist < 64 * np.sqrt(2))
    assert res['nmi']['num_images'] == 3 and 0.0 <= res['nmi']['mean'] <= 1.0
    assert all(set(r) == {'image', 'nmi', 'segments', 'clusters'} for r in res['nmi']['per_image'])
    assert all(r['segments'] == 3 for r in res['nmi']['per_image'])  # background + 2 instances
    assert res['nmi']['mean'] == data['models']['teacher-b']['nmi']['mean']  # same model, same seed
    for name in ('attention_distance', 'nmi', 'nmi_examples'):
        assert osp.isfile(data['files'][name]) and _png_varies(data['files'][name])
    assert summary['files'] == data['files']


def test_attention_stats_distance_only_on_a_folder(load_tool, plain_vit, image_dir, tmp_path):
    tool = load_tool('attention_stats')
    out = tmp_path / 'dist'
    tool.main([plain_vit['config'], plain_vit['checkpoint'], '--images', image_dir, '--device', 'cpu',
               '--out-dir', str(out)])
    data = json.loads((out / 'attention_stats.json').read_text())
    (res,) = data['models'].values()
    assert 'nmi' not in res and len(res['mean_attention_distance']['per_layer_mean']) == 2
    assert set(data['files']) == {'attention_distance'}


def test_knn_linear_probe_tool(load_tool, tiny_ssl_ckpt, labelled_dir, tmp_path):
    tool = load_tool('knn_linear_probe')
    out = tmp_path / 'knn'
    tool.main([tiny_ssl_ckpt['config'], tiny_ssl_ckpt['checkpoint'], '--key', 'student', '--data-root',
               labelled_dir, '--img-size', '64', '--num-workers', '0', '--batch-size', '4', '--k', '1', '5', '20',
               '--knn-feature', 'avgpool', '--linear-epochs', '10', '--device', 'cpu', '--out-dir', str(out)])
    data = json.loads((out / 'knn_linear_probe.json').read_text())
    assert set(data['knn']) == {'1', '5', '20'}
    assert data['num_classes'] == 2 and data['num_train'] == 12 and data['num_val'] == 6
    assert data['feature_dim'] == 64 and 'student' in data['source']
    assert set(data['linear']) >= {'top1', 'top5', 'lr', 'per_lr'}
    # Red vs blue images: the mean patch token of an untrained ViT (layer scale 1e-5, so close to the patch
    # embedding) separates them with the nearest neighbour. Its [CLS] output barely depends on the input yet.
    assert data['knn']['1']['top1'] == 100.0
    assert osp.isfile(out / 'knn_linear_probe.png') and _png_varies(out / 'knn_linear_probe.png')
    with pytest.raises(FileNotFoundError, match='training folder not found'):
        tool.main([tiny_ssl_ckpt['config'], tiny_ssl_ckpt['checkpoint'], '--data-root', str(tmp_path / 'none'),
                   '--out-dir', str(out)])


@pytest.mark.parametrize('which', ['posfield', 'plain'])
def test_position_field_tool(load_tool, tiny_ssl_ckpt, plain_vit, tmp_path, which):
    tool = load_tool('position_field')
    model = tiny_ssl_ckpt if which == 'posfield' else plain_vit
    out = tmp_path / which
    tool.main([model['config'], model['checkpoint'], '--det-size', '128', '--refs', '0.5,0.5', '0.1,0.9',
               '--out-dir', str(out)])
    data = json.loads((out / 'position_field.json').read_text())
    assert set(data) >= {'kind', 'field_hw', 'det_grid', 'pca_explained_variance_ratio', 'similarity_profile',
                         'ref_cells', 'files'}
    if which == 'posfield':
        assert data['field_hw'] == [8, 8] and data['det_grid'] == [16, 16]
        assert data['placements'] == ['whole', 'mean']
        assert data['ref_cells']['as pre-trained'] == [[4, 4], [0, 7]]
    else:
        assert data['field_hw'] == [4, 4] and data['det_grid'] == [16, 16] and data['placements'] == ['whole']
    assert len(data['pca_explained_variance_ratio']) == 3
    assert sum(data['pca_explained_variance_ratio']) <= 1.0 + 1e-6
    for f in data['files'].values():
        assert osp.isfile(f) and _png_varies(f)


@pytest.mark.parametrize('name', ['attention_maps', 'attention_stats', 'knn_linear_probe', 'position_field'])
def test_every_tool_explains_itself(load_tool, name, capsys):
    tool = load_tool(name)
    with pytest.raises(SystemExit) as exc:
        tool.parse_args(['--help'])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert 'config' in text and 'checkpoint' in text and '--out-dir' in text and '--key' in text


@pytest.mark.parametrize('name,extra', [('attention_maps', ['--images', 'x.jpg']),
                                        ('attention_stats', ['--images', 'x.jpg']),
                                        ('knn_linear_probe', ['--data-root', 'x'])])
def test_tools_place_images_at_the_mean_placement_by_default(load_tool, name, extra):
    tool = load_tool(name)
    assert tool.parse_args(['c.py', 'k.pth'] + extra).placement == 'mean'
    assert tool.parse_args(['c.py', 'k.pth', '--placement', 'whole'] + extra).placement == 'whole'
