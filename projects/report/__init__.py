"""report.html of a default-job work dir (tools/run_default_job.py): one self-contained file (every picture a
base64 data URI) with the results table (mean ± std over seeds, paired differences), the loss curves of every
stage from mmengine's ``vis_data/scalars.json``, validation images with predictions beside the ground truth
(``tools/test.py --show-dir``), [CLS] attention maps of each pre-trained backbone and of random initialisation
(:mod:`projects.analysis.attention_maps`), and the learned position field's PCA picture
(:mod:`projects.posfield.evaluation.position_field`)."""
from .html_report import build_report

__all__ = ['build_report']
