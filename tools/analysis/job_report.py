"""(Re)build report.html of a default-job work dir (tools/run_default_job.py writes it at the end of a job).

    python tools/analysis/job_report.py work_dirs/default_job
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('work_dir', help='work dir of tools/run_default_job.py (with summary.json)')
    p.add_argument('--max-images', type=int, default=3, help='validation images per section')
    args = p.parse_args(argv)
    if not osp.isfile(osp.join(args.work_dir, 'summary.json')):
        p.error(f'{args.work_dir} has no summary.json: run tools/run_default_job.py --work-dir {args.work_dir} first')
    from projects.report import build_report
    print(build_report(args.work_dir, args.max_images))


if __name__ == '__main__':
    main()
