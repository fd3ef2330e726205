"""The ``manifest.json`` of a built data folder: what was built and with which arguments (a later run with the
same arguments returns at once). Written last and atomically, so its presence means the folder is complete."""
import json
import os
import os.path as osp
from typing import Dict, Optional

MANIFEST = 'manifest.json'


def read_manifest(folder: str) -> Optional[Dict]:
    path = osp.join(folder, MANIFEST)
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def write_manifest(folder: str, manifest: Dict) -> None:
    tmp = osp.join(folder, MANIFEST + '.tmp')
    with open(tmp, 'w') as f:
        json.dump(manifest, f, indent=1)
    os.replace(tmp, osp.join(folder, MANIFEST))
