"""Compare backbones probed separately: the rows of several tools/analysis/dense_probe.py outputs, every linear
probe measure read at one learning rate for all of them (the best mean cross-validated hold-out score over every
row, as the default job's table does; docs/evidence.md).

    python tools/analysis/probe_table.py work_dirs/search/run_a/probe.json work_dirs/search/run_b/probe.json
    python tools/analysis/probe_table.py $(find work_dirs/search -name probe.json) --out table.json

Each dense_probe.py output already holds every learning rate's val score (``per_lr``); this reads them at the
shared rate instead of each row's own choice, so differences between rows are not differences in the head's
optimisation.
"""
import argparse
import json
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument('probes', nargs='+', metavar='PROBE_JSON', help='outputs of tools/analysis/dense_probe.py')
    p.add_argument('--out', help='also write the table as JSON')
    args = p.parse_args(argv)
    for path in args.probes:
        if not osp.isfile(path):
            p.error(f'PROBE_JSON not found: {path}')
    return args


def main(argv=None):
    args = parse_args(argv)
    from projects.probes.probe_run import format_rows, shared_lr_table
    table = shared_lr_table(args.probes)
    print('one learning rate per measure: ' + (', '.join(f'{m} {lr:g}' for m, lr in table['shared_lr'].items())
                                                 or 'none (no row has a learning-rate grid)'))
    print(format_rows(table))
    if args.out:
        from projects.common.checkpoint import atomic_write_bytes
        atomic_write_bytes(json.dumps(table, indent=1).encode(), args.out)
    return table


if __name__ == '__main__':
    from projects.common.runner_setup import exit_on_bad_input
    exit_on_bad_input(main)
