"""One line per run: every metrics JSON that ``tools/test.py --out`` wrote under a folder, as one table.

    python tools/analysis/results_table.py work_dirs                    # all runs below work_dirs
    python tools/analysis/results_table.py work_dirs/default_job --keys coco/bbox_mAP coco/segm_mAP
    python tools/analysis/results_table.py work_dirs --format csv --out runs.csv

Definitions of the columns and values: :mod:`projects.report.results_table`.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from projects.report.results_table import column_keys, find_runs, render  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Collect the metrics JSON files written by tools/test.py --out under a folder and print '
                    'one line per run.', formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('root', help='folder searched recursively for metrics JSON files')
    p.add_argument('--keys', nargs='+', help='metric keys to show, in this order (default: all found)')
    p.add_argument('--format', choices=('markdown', 'csv'), default='markdown')
    p.add_argument('--out', help='also write the table to this file')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    runs = find_runs(args.root)
    if not runs:
        print(f'no metrics JSON (written by tools/test.py --out) under {args.root}', file=sys.stderr)
        return 1
    table = render(runs, column_keys(runs, args.keys), args.format)
    print(table, end='')
    if args.out:
        with open(args.out, 'w') as f:
            f.write(table)
    return 0


if __name__ == '__main__':
    sys.exit(main())
