"""An unknown type in a config fails with the config file, the key and the registries named."""
import pytest
from mmengine.config import Config

from projects.common.runner_setup import clear_config_errors


def test_unknown_backbone_type_names_file_key_and_registries(tmp_path):
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    cfg = Config(dict(model=dict(type='ImageClassifier', backbone=dict(type='VisionTransformr', arch='b'),
                                 neck=None, head=None),
                      custom_imports=dict(imports=['projects.posfield'])))
    with pytest.raises(KeyError) as info:
        with clear_config_errors(cfg, 'configs/my_cfg.py'):
            MODELS.build(cfg.model)
    msg = str(info.value)
    assert 'configs/my_cfg.py' in msg
    assert 'model.backbone.type' in msg
    assert 'mmpretrain::model' in msg and 'mmengine::model' in msg
    assert 'VisionTransformer' in msg  # close match suggested
    assert "projects.posfield" in msg


def test_other_key_errors_pass_through():
    cfg = Config(dict())
    with pytest.raises(KeyError, match='plain'):
        with clear_config_errors(cfg, 'x.py'):
            raise KeyError('plain')
