"""--cfg-options keys that would be silently ignored, documented options that must work, config errors."""
import os.path as osp
import re

import pytest

from projects.common.runner_setup import ConfigOptionError, ConfigOptionWarning, check_key_value_pairs, load_config
from tests.helpers import ROOT, TINY_PRETRAIN, write_images
from tests.test_bad_input.helpers import run_tool, run_tool_in_process

TINY_DET = osp.join(ROOT, 'configs/mask_rcnn/mask-rcnn_vit-tiny-p16-posfield_cpu-smoke_coco-format.py')


def _option_warnings(record):
    return [str(w.message) for w in record if issubclass(w.category, ConfigOptionWarning)]


def test_key_not_at_top_level_warns_with_the_nearest_keys(tmp_path):
    path = tmp_path / 'plain.py'
    path.write_text("train_cfg = dict(type='IterBasedTrainLoop', max_iters=6)\n")
    with pytest.warns(ConfigOptionWarning) as record:
        cfg = load_config(str(path), {'max_iters': 2})
    assert _option_warnings(record) == [
        f"--cfg-options max_iters: the config has no key 'max_iters'; it is added, but nothing reads it ({path}). "
        'Nearest existing keys: train_cfg.max_iters']
    assert cfg.train_cfg.max_iters == 6


def test_misspelt_keyword_of_a_built_type_is_an_error_with_the_nearest_keys():
    """The new key would be passed to ResumableIterBasedTrainLoop (the config's loop), which takes no max_iter:
    building it would fail."""
    with pytest.raises(ConfigOptionError) as err:
        load_config(TINY_PRETRAIN, {'train_cfg.max_iter': 2})
    assert str(err.value) == (
        "--cfg-options train_cfg.max_iter: the config has no key 'train_cfg.max_iter', and ResumableIterBasedTrainLoop "
        f"(train_cfg.type) takes no argument 'max_iter', so building it would fail ({TINY_PRETRAIN}). "
        'Nearest existing keys: train_cfg.max_iters')


def test_misspelt_keyword_of_a_loop_without_type_is_an_error(tmp_path):
    path = tmp_path / 'plain.py'
    path.write_text("train_cfg = dict(by_epoch=True, max_epochs=6)\nval_cfg = dict()\n")
    with pytest.raises(ConfigOptionError, match=r"and EpochBasedTrainLoop \(train_cfg\.type\) takes no argument "
                                                r"'max_epoch', so building it would fail"):
        load_config(str(path), {'train_cfg.max_epoch': 2})


def test_new_keyword_that_the_built_type_takes_is_silent(recwarn, tmp_path):
    cfg = load_config(TINY_PRETRAIN, {'train_cfg.val_begin': 2,  # IterBasedTrainLoop(val_begin=...)
                                      'optim_wrapper.accumulative_counts': 2})  # OptimWrapper(accumulative_counts=)
    assert cfg.train_cfg.val_begin == 2 and cfg.optim_wrapper.accumulative_counts == 2
    path = tmp_path / 'plain.py'
    path.write_text("optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1))\n")
    cfg = load_config(str(path), {'optim_wrapper.paramwise_cfg': {'bias_decay_mult': 0.0}})  # the constructor's
    assert cfg.optim_wrapper.paramwise_cfg.bias_decay_mult == 0.0
    assert not [w for w in recwarn if issubclass(w.category, ConfigOptionWarning)]


def test_new_key_in_a_dict_without_type_says_who_may_read_it():
    with pytest.warns(ConfigOptionWarning) as record:
        load_config(TINY_PRETRAIN, {'train_dataloader.batch_szie': 2})
    [msg] = _option_warnings(record)
    assert msg.startswith(
        "--cfg-options train_dataloader.batch_szie: the config has no key 'train_dataloader.batch_szie'; it is added "
        "to 'train_dataloader', which has no type: it is read only if the code that uses 'train_dataloader' looks "
        f"for 'batch_szie' (a keyword it does not take fails there) ({TINY_PRETRAIN}). Nearest existing keys: "
        'train_dataloader.batch_size, ')


@pytest.mark.parametrize('option, message', [
    ('train_cfg.max_iters=abc', "--cfg-options train_cfg.max_iters=abc: expected an int (the config has "
                                f"train_cfg.max_iters = 6; {TINY_PRETRAIN}), got the string 'abc'"),
    ('optim_wrapper.optimizer.lr=fast', "--cfg-options optim_wrapper.optimizer.lr=fast: expected a float (the config "
                                        f"has optim_wrapper.optimizer.lr = 0.0005; {TINY_PRETRAIN}), got the string "
                                        "'fast'"),
    ('train_cfg.max_iters=true', "--cfg-options train_cfg.max_iters=True: expected an int (the config has "
                                 f"train_cfg.max_iters = 6; {TINY_PRETRAIN}), got True (a bool)"),
    ('train_dataloader.pin_memory=yes', "--cfg-options train_dataloader.pin_memory=yes: expected true or false (the "
                                        f"config has train_dataloader.pin_memory = False; {TINY_PRETRAIN}), got the "
                                        "string 'yes'"),
])
def test_value_of_the_wrong_type_stops_the_tool_before_the_runner_is_built(tmp_path, option, message):
    rc, log = run_tool_in_process('train', [TINY_PRETRAIN, '--work-dir', str(tmp_path / 'wd'), '--cfg-options',
                                            option])
    assert rc == 1 and log.endswith(f'error: {message}'), log[-2000:]
    assert not (tmp_path / 'wd').exists()  # nothing was built


@pytest.mark.parametrize('options, expected', [
    ({'train_cfg.max_iters': 1e5}, ('train_cfg.max_iters', 100000.0)),  # 1e5 is parsed as a float
    ({'optim_wrapper.optimizer.lr': 1}, ('optim_wrapper.optimizer.lr', 1)),  # an int where a float is held
    ({'randomness.seed': None}, ('randomness.seed', None)),
    ({'train_dataloader.pin_memory': 1}, ('train_dataloader.pin_memory', 1)),
    ({'model.backbone.arch': 'small'}, ('model.backbone.arch', 'small')),  # strings are not checked
    ({'model.backbone.img_size': [64, 96]}, ('model.backbone.img_size', [64, 96])),  # an int or a pair
])
def test_values_of_compatible_types_are_accepted(options, expected):
    cfg = load_config(TINY_PRETRAIN, options)
    node = cfg
    for part in expected[0].split('.'):
        node = node[part]
    assert node == expected[1]


def test_train_tool_refuses_an_option_without_equals_sign():
    rc, log = run_tool(['tools/train.py', TINY_PRETRAIN, '--cfg-options', 'train_cfg.max_iters=2', 'max_iters'])
    assert rc == 1 and log.strip().splitlines()[-1] == 'train.py: error: --cfg-options max_iters: expected KEY=VALUE'
    assert 'Traceback' not in log
    assert check_key_value_pairs('--cfg-options', ['a=1', 'b=', 'c=x=y']) is None  # an empty value is a value
    with pytest.raises(ConfigOptionError, match='^--cfg-options =3: expected KEY=VALUE$'):
        check_key_value_pairs('--cfg-options', ['=3'])


def test_new_parent_key_is_named():
    with pytest.warns(ConfigOptionWarning, match=r"the config has no 'optim_wraper', so 'optim_wraper\.optimizer\.lr' "
                                                 r"creates it.*Nearest existing keys: optim_wrapper\.optimizer\.lr"):
        load_config(TINY_PRETRAIN, {'optim_wraper.optimizer.lr': 0.1})


def test_top_level_variable_warns_that_derived_keys_keep_their_values():
    with pytest.warns(ConfigOptionWarning) as record:
        cfg = load_config(TINY_DET, {'data_root': '/elsewhere/'})
    [msg] = _option_warnings(record)
    assert msg.startswith(f"--cfg-options data_root: 'data_root' is a top-level variable of {TINY_DET}; it was read "
                          'when the file was parsed, so the keys computed from it keep their values: ')
    assert 'train_dataloader.dataset.data_root' in msg and 'val_evaluator.ann_file' in msg
    assert cfg.train_dataloader.dataset.data_root == 'data/demo/coco/'


def test_existing_keys_do_not_warn(recwarn):
    load_config(TINY_PRETRAIN, {'train_cfg.max_iters': 2, 'optim_wrapper.optimizer.lr': 0.1})
    assert not [w for w in recwarn if issubclass(w.category, ConfigOptionWarning)]


def test_smoke_detection_config_header_documents_keys_that_exist():
    """The header's --cfg-options must be keys of the config (a top-level `data_root=` would be ignored)."""
    with open(TINY_DET) as f:
        header = ''.join(line for line in f if line.startswith('#'))
    keys = re.findall(r'([\w.]+)=\S+', header.split('--cfg-options', 1)[1])
    assert keys and 'data_root' not in keys
    cfg = load_config(TINY_DET)
    for key in keys:
        node = cfg
        for part in key.split('.'):
            assert part in node, f'{key} (documented in the header) is not a key of {TINY_DET}'
            node = node[part]


def test_train_tool_warns_about_max_iters_and_removes_stale_temporaries(tmp_path):
    wd = tmp_path / 'wd'
    wd.mkdir()
    stale = wd / '.iter_4.pth.k2j4h5g1.tmp'  # what a kill during a checkpoint write leaves
    stale.write_bytes(b'\0' * 1024)
    keep = wd / 'notes.tmp'
    keep.write_text('not ours')
    rc, log = run_tool(['tools/train.py', TINY_PRETRAIN, '--work-dir', str(wd), '--cfg-options', 'max_iters=2',
                        f'train_dataloader.dataset.data_root={tmp_path / "no_such_folder"}'])
    # this config has a top-level variable max_iters: setting it after parsing changes nothing either
    assert f"--cfg-options max_iters: 'max_iters' is a top-level variable of {TINY_PRETRAIN}; it was read when the " \
           'file was parsed, so the keys computed from it keep their values: train_cfg.max_iters.' in log
    assert f'removed the stale temporary file {stale}' in log and not stale.exists() and keep.exists()
    assert rc != 0 and 'no_such_folder' in log  # and the missing data folder is named


def test_unknown_type_names_config_key_and_registries(tmp_path):
    cfg = tmp_path / 'typo.py'
    cfg.write_text(f"_base_ = ['{TINY_PRETRAIN}']\noptim_wrapper = dict(type='OptimWraper')\n")
    images = write_images(tmp_path / 'imgs', n=2)
    rc, log = run_tool_in_process('train', [str(cfg), '--work-dir', str(tmp_path / 'wd'), '--cfg-options',
                                            f'train_dataloader.dataset.data_root={images}'])
    assert rc == 1, log[-2000:]
    assert f"error: config {cfg}: type 'OptimWraper' is not registered." in log and 'key: optim_wrapper.type' in log
    assert 'close matches: OptimWrapper' in log


def test_missing_config_file_is_named(tmp_path):
    rc, log = run_tool(['tools/train.py', str(tmp_path / 'nope.py')])
    assert rc == 1 and f'train.py: error: config file not found: {tmp_path / "nope.py"}' in log
