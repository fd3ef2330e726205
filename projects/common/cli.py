"""What the command lines of tools/ share: the ``--cfg-options`` action, the launcher arguments of tools/train.py
and tools/test.py, and the arguments that name a pre-trained backbone in the analysis tools."""
import argparse
import os


class CfgOptionsAction(argparse.Action):
    """mmengine's ``DictAction``, with an item that is not ``KEY=VALUE`` refused by name (mmengine fails on it
    with "not enough values to unpack")."""

    def __call__(self, parser, namespace, values, option_string=None):
        from mmengine.config import DictAction

        from .runner_setup import check_key_value_pairs
        check_key_value_pairs(option_string, values)
        DictAction(self.option_strings, self.dest)(parser, namespace, values, option_string)


def add_launcher_arguments(parser: argparse.ArgumentParser, launcher_help=None) -> None:
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none', help=launcher_help)
    # torch.distributed.launch passes --local_rank, torchrun sets LOCAL_RANK; accept both spellings.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse_launcher_args(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """``parser.parse_args(argv)``, with ``LOCAL_RANK`` set from ``--local_rank`` where no launcher set it."""
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def cuda_available() -> bool:
    """Whether commands started from here will run on a GPU (``is_available`` creates no CUDA context)."""
    import torch
    return torch.cuda.is_available()


def default_device() -> str:
    return 'cuda' if cuda_available() else 'cpu'


def backbone_parser(description: str, key_help: str = 'which weights of a PosFieldSSL checkpoint',
                    config_help: str = 'pre-training config of the checkpoint (its model.backbone is built)'
                    ) -> argparse.ArgumentParser:
    """The parser of an analysis tool, with its ``CONFIG CHECKPOINT [--key]`` arguments."""
    from .backbone_loader import KEYS
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('config', help=config_help)
    p.add_argument('checkpoint', help='PosFieldSSL checkpoint (or any mmpretrain/backbone-only checkpoint)')
    p.add_argument('--key', choices=KEYS, default='teacher', help=key_help)
    return p


def add_placement_argument(parser: argparse.ArgumentParser, default_help: str = 'default') -> None:
    """``--placement``: the canvas window of an image for position-field backbones."""
    parser.add_argument('--placement', choices=['whole', 'mean'], default='mean',
                        help='canvas window of the image for position-field backbones: the mean pre-training '
                             f'placement ({default_help}) or the whole canvas (as the detector)')
