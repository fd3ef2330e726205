"""The end-to-end jobs behind tools/run_default_job.py (:mod:`.default_job`) and tools/run_localization_job.py
(:mod:`.localization_job`): each job's plan of stages, the command each stage runs, and the collection of the
stages' outputs into summary.json, a table and a report. The runner mechanics both use (logged commands, progress,
ETA, resume) are :mod:`projects.common.jobs`.

Every stage is its own command of this repository, so a job's process loads no model code: this package
imports nothing on import.
"""
