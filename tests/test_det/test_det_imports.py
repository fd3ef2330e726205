"""Importing the detector does not import the analysis code (k-means, figures).

mmdet 3.3's own ``mmdet.models`` imports matplotlib (``mmdet/utils/mot_error_visualize.py``), so a detector
cannot avoid matplotlib altogether; what is tested is that this repository's code adds none of it: the modules
``import projects.posfield.det`` loads beyond those mmdet's and mmpretrain's models load themselves.
"""
import json
import subprocess
import sys

from tests.helpers import ROOT

# one process: the modules mmdet's and mmpretrain's models load, then those the detector package adds
CODE = """import sys, json
import mmdet.models, mmdet.registry, mmpretrain.models, mmpretrain.registry
libraries = set(sys.modules)
import projects.posfield.det
print(json.dumps(dict(libraries=sorted(libraries), ours=sorted(sys.modules))))
"""


def test_importing_the_detector_does_not_import_analysis_or_plotting():
    out = subprocess.run([sys.executable, '-c', CODE], cwd=ROOT, capture_output=True, text=True, check=True)
    mods = json.loads(out.stdout.strip().splitlines()[-1])
    ours = set(mods['ours'])
    added = ours - set(mods['libraries'])
    assert 'projects.posfield.det' in added and 'projects.posfield.evaluation' in added  # KNNEvalHook registered
    assert not [m for m in added if m.split('.')[0] in ('matplotlib', 'sklearn', 'seaborn')]
    assert not {'projects.analysis.attention_stats', 'projects.analysis.attention_recorder',
                'projects.analysis.visual'} & ours
