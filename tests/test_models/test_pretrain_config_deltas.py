"""Pre-training configs are deltas: each ablation changes one setting of the main config, the pipeline is
written once, and the DINOv2-dagger baseline is the one fragment configs/_base_/models/dinov2-dagger.py."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

from tests.helpers import ROOT

MAIN = osp.join(ROOT, 'configs/posfield/posfield_vit-small-p16_4xb64-amp-100e_in1k.py')
# The one setting each ablation changes (a leaf path of the config dict).
ABLATIONS = {
    'ablation_content0-pos100': ['train_dataloader.collate_fn.masking.content_ratio'],
    'ablation_cropaligned-only': ['train_dataloader.collate_fn.masking.content_ratio'],
    'ablation_field19': ['model.backbone.pos_field.field_size'],
    'ablation_placement-const': ['train_dataloader.collate_fn.placement.mode'],
    'ablation_placement-uniform': ['train_dataloader.collate_fn.placement.mode',
                                   'train_dataloader.collate_fn.placement.scale_range'],
    'ablation_posmask-block': ['train_dataloader.collate_fn.masking.pos_mode'],
    'ablation_posmask-only': ['train_dataloader.collate_fn.crop_aligned', 'train_dataloader.collate_fn.placement.mode'],
}


def leaves(node, prefix=''):
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            out.update(leaves(v, f'{prefix}.{k}' if prefix else k))
        return out
    return {prefix: node}


def differing(a: dict, b: dict):
    la, lb = leaves(a), leaves(b)
    return sorted(k for k in set(la) | set(lb) if la.get(k, '<absent>') != lb.get(k, '<absent>'))


def test_every_ablation_is_covered():
    found = {osp.basename(p).split('_vit')[0] for p in glob.glob(osp.join(ROOT, 'configs/posfield/ablation_*.py'))}
    assert found == set(ABLATIONS)


@pytest.mark.parametrize('name', sorted(ABLATIONS))
def test_ablation_changes_only_its_setting(name):
    (path, ) = glob.glob(osp.join(ROOT, f'configs/posfield/{name}_vit-small-p16_4xb64-amp-100e_in1k.py'))
    main, ablation = Config.fromfile(MAIN).to_dict(), Config.fromfile(path).to_dict()
    assert differing(main, ablation) == ABLATIONS[name]
    assert ablation['train_dataloader']['dataset'] == main['train_dataloader']['dataset']  # the pipeline is not copied


@pytest.mark.parametrize('method, baseline', [
    ('configs/posfield/posfield_vit-small-p16_4xb64-amp-100e_in1k.py',
     'configs/posfield/dinov2-dagger_vit-small-p16_4xb64-amp-100e_in1k.py'),
    ('configs/demo/posfield_vit-mini-p16_demo-pool.py', 'configs/demo/dinov2-dagger_vit-mini-p16_demo-pool.py'),
])
def test_dinov2_dagger_is_the_method_plus_the_one_fragment(method, baseline):
    fragment = Config.fromfile(osp.join(ROOT, 'configs/_base_/models/dinov2-dagger.py'))
    dagger, data = fragment.dinov2_dagger.to_dict(), fragment.dinov2_dagger_data.to_dict()
    expected = Config.fromfile(osp.join(ROOT, method))
    expected.merge_from_dict(dict(model=dagger, train_dataloader=data))
    got = Config.fromfile(osp.join(ROOT, baseline))
    assert got.model.to_dict() == expected.model.to_dict()
    assert got.train_dataloader.to_dict() == expected.train_dataloader.to_dict()
    assert differing(expected.to_dict(), got.to_dict()) == sorted(
        ['dinov2_dagger.' + k for k in leaves(dagger)] + ['dinov2_dagger_data.' + k for k in leaves(data)])
    assert got.model.backbone.pos_embed_type == 'interpolate'
    assert got.train_dataloader.collate_fn.masking.content_ratio == 1.0
