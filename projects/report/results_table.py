"""The results table: one line per run, from every metrics JSON that ``tools/test.py --out`` wrote under a folder.

A metrics JSON is any ``*.json`` file holding ``{"config": ..., "checkpoint": ..., "metrics": {...}}``; other
JSON files are skipped. COCO APs (``coco/*``, stored as fractions) are printed in percent; -1 (no object of
that size in the set) prints as ``-``; other metrics (e.g. ``loc/*`` of the localisation metric, already in
percent) print as stored. Rows are sorted by run path; columns are the union of the metrics of all runs, COCO
box then mask first, unless ``keys`` names them. ``tools/analysis/results_table.py`` is the command line.
"""
import csv
import io
import json
import os
import os.path as osp

COCO_ORDER = [f'coco/{task}_mAP{suffix}' for task in ('bbox', 'segm')
              for suffix in ('', '_50', '_75', '_s', '_m', '_l')]


def find_runs(root):
    """``[(run name, record)]`` for every metrics JSON under ``root``, sorted by path."""
    if not osp.isdir(root):
        raise FileNotFoundError(f'results_table: {root!r} is not a folder')
    runs = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if not name.endswith('.json'):
                continue
            path = osp.join(dirpath, name)
            try:
                with open(path) as f:
                    record = json.load(f)
            except (OSError, ValueError):
                continue  # not ours (or half-written by something else): a table tool must not stop on it
            if not (isinstance(record, dict) and isinstance(record.get('metrics'), dict)
                    and 'checkpoint' in record):
                continue
            run = osp.relpath(path, root)
            runs.append((osp.dirname(run) if name == 'metrics.json' and osp.dirname(run) else run, record))
    return runs


def column_keys(runs, keys=None):
    if keys:
        return list(keys)
    found = {k for _, r in runs for k, v in r['metrics'].items() if isinstance(v, (int, float))}
    return [k for k in COCO_ORDER if k in found] + sorted(found - set(COCO_ORDER))


def format_value(key, value):
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return '-'
    if key.startswith('coco/'):
        return '-' if value < 0 else f'{100 * value:.1f}'
    return f'{value:.2f}'


def render(runs, keys, fmt='markdown'):
    header = ['run', 'checkpoint'] + keys
    rows = [[name, osp.basename(str(r['checkpoint']))] + [format_value(k, r['metrics'].get(k)) for k in keys]
            for name, r in runs]
    if fmt == 'csv':
        buf = io.StringIO()
        csv.writer(buf, lineterminator='\n').writerows([header] + rows)
        return buf.getvalue()
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
    return '\n'.join(lines) + '\n'
