"""The import graph between the packages of projects/ is the map of docs/design.md ("Layout"), and nothing in
projects/ loads a tool: every edge is a visible import of an allowed package."""
import ast
import os
import os.path as osp

from tests.helpers import ROOT

# docs/design.md, "What each package may import from projects/"
ALLOWED = {
    'common': set(), 'demo_data': set(),
    'analysis': {'common'}, 'simclr_loc': {'common'},
    'probes': {'analysis', 'common'},
    'posfield.batch': {'common'},
    'posfield.datasets': {'posfield.batch', 'common'},
    'posfield.models': {'posfield.batch', 'common'},
    'posfield.engine': {'common'},
    'posfield.det': {'posfield.batch', 'posfield.models', 'posfield.engine', 'common'},
    'posfield.evaluation': {'posfield.batch', 'posfield.models', 'analysis', 'common'},
    'report': {'posfield.evaluation', 'analysis', 'common'},
    'jobs': {'probes', 'report', 'common'},
    'benchmarks': {'posfield.models', 'common'},
}


def package_of(module: str):
    """``projects.posfield.models.x`` -> ``'posfield.models'``; ``projects.common.x`` -> ``'common'``."""
    parts = module.split('.')
    if parts[0] != 'projects' or len(parts) < 2:
        return None
    return '.'.join(parts[1:3]) if parts[1] == 'posfield' and len(parts) > 2 else parts[1]


def imports_of(path: str, module: str):
    """Absolute names of the modules ``path`` imports (relative imports resolved against ``module``)."""
    tree = ast.parse(open(path).read(), path)
    here = module.split('.') if path.endswith('__init__.py') else module.split('.')[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = here[:len(here) - node.level + 1] if node.level else []
            name = '.'.join(base + ([node.module] if node.module else []))
            yield name
            if node.module is None or node.level:  # ``from . import x``: x may be a subpackage
                yield from (f'{name}.{a.name}' for a in node.names)


def project_modules():
    for folder, _, files in os.walk(osp.join(ROOT, 'projects')):
        for name in sorted(files):
            if name.endswith('.py'):
                path = osp.join(folder, name)
                module = osp.relpath(path, ROOT)[:-3].replace(os.sep, '.')
                yield path, module[:-len('.__init__')] if name == '__init__.py' else module


def test_package_imports_follow_the_map_of_docs_design():
    found, unknown = [], set()
    for path, module in project_modules():
        src = package_of(module)
        if src in (None, 'posfield'):  # projects/__init__.py and the umbrella that imports its own subpackages
            continue
        if src not in ALLOWED:
            unknown.add(src)
            continue
        for target in imports_of(path, module):
            dst = package_of(target)
            if dst is not None and dst != src and dst != 'posfield' and dst not in ALLOWED[src]:
                found.append(f'{osp.relpath(path, ROOT)} imports {target} ({src} -> {dst})')
    assert not unknown, f'packages missing from the map of docs/design.md: {sorted(unknown)}'
    assert not found, 'imports outside the map of docs/design.md:\n' + '\n'.join(found)


def test_no_project_module_loads_a_tool():
    for path, _ in project_modules():
        src = open(path).read()
        assert 'spec_from_file_location' not in src and 'import tools' not in src, path


def test_the_map_sees_relative_and_absolute_imports(tmp_path):
    probe = tmp_path / 'm.py'
    probe.write_text('from ..models.utils import archs\nfrom . import canvas\nimport projects.common.jobs\n')
    names = set(imports_of(str(probe), 'projects.posfield.evaluation.m'))
    assert {'projects.posfield.models.utils', 'projects.posfield.evaluation.canvas', 'projects.common.jobs'} <= names
    assert package_of('projects.posfield.models.utils') == 'posfield.models' and package_of('numpy') is None
