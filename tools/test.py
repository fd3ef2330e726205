"""Evaluate a checkpoint with a config's test loop and write the metrics.

    python tools/test.py CONFIG CHECKPOINT [--out metrics.json] [--show-dir DIR] [--cfg-options k=v ...]
    bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [...]

For the detection configs this prints COCO AP^box / AP^mask (``coco/bbox_mAP``, ``coco/segm_mAP`` with
``_50``, ``_75``, ``_s``, ``_m``, ``_l``); ``--out`` writes the same numbers as JSON.
A checkpoint that does not fit the config's model (a pre-training checkpoint, a detector of another width) is
refused with its missing, unexpected and mis-shaped keys, instead of being evaluated as a partly random model.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from projects.common.cli import CfgOptionsAction, add_launcher_arguments, parse_launcher_args  # noqa: E402
from projects.common.runner_setup import exit_on_bad_input  # noqa: E402
from projects.common.runs import run_test  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (evaluate) a checkpoint.')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file (.pth) to evaluate')
    parser.add_argument('--work-dir', help='folder for the test log (default: ./work_dirs/<config name>)')
    parser.add_argument('--out', help='write the metrics as JSON to this file')
    parser.add_argument('--show-dir', help='write images with the predictions drawn into this folder '
                        '(relative paths are inside the run\'s timestamped log folder)')
    parser.add_argument('--interval', type=int, default=1, help='with --show-dir: draw every N-th image')
    parser.add_argument('--score-thr', type=float, default=0.3, help='with --show-dir: min score drawn')
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction, default={},
                        help='override config keys, e.g. test_dataloader.batch_size=1')
    add_launcher_arguments(parser)
    return parse_launcher_args(parser, argv)


def main(argv=None):
    return run_test(parse_args(argv))


if __name__ == '__main__':
    exit_on_bad_input(main)
