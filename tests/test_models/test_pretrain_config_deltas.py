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
    'ablation_content0-pos100': ['model.data_preprocessor.masking.content_ratio'],
    'ablation_cropaligned-only': ['model.data_preprocessor.masking.content_ratio'],
    'ablation_field19': ['model.backbone.pos_field.field_size'],
    'ablation_placement-const': ['model.data_preprocessor.placement.mode'],
    'ablation_placement-uniform': ['model.data_preprocessor.placement.mode',
                                   'model.data_preprocessor.placement.scale_range'],
    'ablation_posmask-block': ['model.data_preprocessor.masking.pos_mode'],
    'ablation_posmask-only': ['model.data_preprocessor.crop_aligned', 'model.data_preprocessor.placement.mode'],
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
    assert ablation['train_dataloader'] == main['train_dataloader']  # the pipeline is not copied


@pytest.mark.parametrize('method, baseline', [
    ('configs/posfield/posfield_vit-small-p16_4xb64-amp-100e_in1k.py',
     'configs/posfield/dinov2-dagger_vit-small-p16_4xb64-amp-100e_in1k.py'),
    ('configs/demo/posfield_vit-mini-p16_demo-pool.py', 'configs/demo/dinov2-dagger_vit-mini-p16_demo-pool.py'),
])
def test_dinov2_dagger_is_the_method_plus_the_one_fragment(method, baseline):
    dagger = Config.fromfile(osp.join(ROOT, 'configs/_base_/models/dinov2-dagger.py')).dinov2_dagger.to_dict()
    expected = Config.fromfile(osp.join(ROOT, method))
    expected.merge_from_dict(dict(model=dagger))
    got = Config.fromfile(osp.join(ROOT, baseline))
    assert got.model.to_dict() == expected.model.to_dict()
    assert differing(expected.to_dict(), got.to_dict()) == sorted(
        'dinov2_dagger.' + k for k in leaves(dagger))  # besides the fragment's own variable, nothing else
    assert got.model.backbone.pos_embed_type == 'interpolate'
    assert got.model.data_preprocessor.masking.content_ratio == 1.0
