"""prepare(): the whole folder from (fake) wheels: disjoint train/val backgrounds, the pool, manifest,
README, idempotence and determinism; the CLI's error path."""
import io
import json
import os
import os.path as osp
import zipfile

import pytest
from PIL import Image

from projects.demo_data import DemoDataError, Source, prepare, sha256_file, split_by_group

SRC_A = Source(name='fa', package='fake-a', version='1.0', licence='CC0 (a)', members=('fa/*.jpg',),
               groups=((r'pair_', 'pair'),))
SRC_B = Source(name='fb', package='fake-b', version='2.0', licence='MIT (b)', members=('fb/*.jpg',))


def _jpg(arr):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format='JPEG', quality=90)
    return buf.getvalue()


@pytest.fixture
def wheels(tmp_path, blocky):
    out = {}
    for src, names in ((SRC_A, ['pair_l', 'pair_r', 'street', 'park', 'lake', 'big']),
                       (SRC_B, ['cat', 'dog', 'tree', 'sky'])):
        path = tmp_path / f'{src.package.replace("-", "_")}-{src.version}-py3-none-any.whl'
        with zipfile.ZipFile(path, 'w') as zf:
            for i, n in enumerate(names):
                size = (420, 300) if n == 'big' else (110, 140)
                zf.writestr(f'{src.name}/{n}.jpg', _jpg(blocky(*size, seed=i + 10 * len(n))))
        out[src.name] = str(path)
    return out


def _prepare(root, wheels, calls=None, **kw):
    def downloader(source, cache_dir):
        if calls is not None:
            calls.append(source.name)
        return wheels[source.name]
    kw.setdefault('seed', 0)
    return prepare(str(root), num_train=6, num_val=3, image_size=80, short_side=96, sources=[SRC_A, SRC_B],
                   val_fraction=0.3, min_area=32, downloader=downloader, progress=False, log=lambda s: None, **kw)


def test_prepare_builds_a_consistent_folder(tmp_path, wheels):
    calls = []
    m = _prepare(tmp_path / 'demo', wheels, calls)
    root = m['root']
    assert calls == ['fa', 'fb']
    # train / val backgrounds: disjoint photos and disjoint groups (the stereo pair stays together)
    imgs = {s: json.load(open(osp.join(root, m['coco'][s]['ann_file'])))['images'] for s in ('train', 'val')}
    bg = {s: {im['background'] for im in imgs[s]} for s in imgs}
    assert bg['train'] and bg['val'] and not bg['train'] & bg['val']
    photos = {r['file']: r for r in json.load(open(osp.join(root, 'photos', 'manifest.json')))['images']}
    groups = {s: {photos[b]['group'] for b in bg[s]} for s in bg}
    assert not groups['train'] & groups['val']
    pair = {f for f, r in photos.items() if r['group'] == 'fa/pair'}
    assert len(pair) == 2 and not (pair & bg['train'] and pair & bg['val'])  # the stereo pair stays on one side
    assert groups['val'] <= set(m['backgrounds']['val_groups'])
    # the pool holds no val background (nor its tiles), but the train backgrounds are in it
    pool = {f for f in os.listdir(osp.join(root, 'unlabeled')) if f.endswith('.jpg')}
    assert pool and not any(photos[f]['group'] in set(m['backgrounds']['val_groups']) for f in pool)
    assert bg['train'] <= pool
    assert len(pool) == m['unlabeled']['count']
    assert {f for f in photos if photos[f]['kind'] == 'tile'}  # 'big' (300 px >= 3 * 96) gives quadrants
    # annotation checksums, counts, README
    for s, n in (('train', 6), ('val', 3)):
        c = m['coco'][s]
        assert sha256_file(osp.join(root, c['ann_file'])) == c['sha256']
        assert len(os.listdir(osp.join(root, c['img_dir']))) == c['num_images'] == n
    readme = open(osp.join(root, 'README.md')).read()
    assert 'Synthetic composition of generated shapes on real photo backgrounds' in readme
    assert 'does not contain the val background photos' in readme and 'fake-a==1.0' in readme
    assert m['sources']['fb']['licence'] == 'MIT (b)'

    # same arguments: returns the manifest without any work; --force rebuilds to the same bytes
    logs = []
    again = prepare(root, num_train=6, num_val=3, image_size=80, short_side=96, sources=[SRC_A, SRC_B],
                    val_fraction=0.3, min_area=32, downloader=lambda s, d: pytest.fail('no download expected'),
                    progress=False, log=logs.append)
    assert again['coco'] == m['coco'] and 'up to date' in logs[0]
    forced = _prepare(tmp_path / 'demo', wheels, calls, force=True)
    assert forced['coco']['train']['sha256'] == m['coco']['train']['sha256']
    # another seed: another split/composition; a second root with the same seed: identical files
    other = _prepare(tmp_path / 'demo2', wheels, seed=1)
    assert other['coco']['train']['sha256'] != m['coco']['train']['sha256']
    same = _prepare(tmp_path / 'demo3', wheels, seed=0)
    assert same['coco']['val']['sha256'] == m['coco']['val']['sha256']


def test_pool_may_include_val(tmp_path, wheels):
    m = _prepare(tmp_path / 'demo', wheels, pool_excludes_val=False)
    assert m['unlabeled']['count'] == m['photos']['count']
    assert 'also contains the val background photos' in open(osp.join(m['root'], 'README.md')).read()


def test_split_by_group():
    recs = [dict(file=f'{g}{i}', group=g) for g, n in (('a', 3), ('b', 1), ('c', 2), ('d', 1), ('e', 1))
            for i in range(n)]
    for seed in range(10):
        train, val = split_by_group(recs, 0.25, seed)
        assert train and val and len(train) + len(val) == len(recs)
        assert not {r['group'] for r in train} & {r['group'] for r in val}
        assert len(val) >= 2  # at least a quarter of 8
    assert split_by_group(recs, 0.25, 3) == split_by_group(recs, 0.25, 3)
    with pytest.raises(DemoDataError, match='at least 2 groups'):
        split_by_group([dict(group='a'), dict(group='a')], 0.5, 0)
    with pytest.raises(DemoDataError, match='val_fraction'):
        split_by_group(recs, 1.0, 0)


def test_cli_reports_bad_source(capsys):
    from tests.helpers import load_tool
    mod = load_tool('tools/data/prepare_demo_data.py')
    assert mod.parse_args([]).data_root == 'data/demo'
    assert mod.main(['--sources', 'imagenet', '--data-root', '/nonexistent/demo']) == 1
    assert 'unknown source' in capsys.readouterr().err
