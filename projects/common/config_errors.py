"""Clear errors for configs that name a type no registry knows.

mmengine raises ``KeyError: 'Foo is not in the mmdet::model registry. Please check ...'`` with neither the
config file nor the key that holds ``type='Foo'``. :func:`explain_build_error` finds every key path whose
``type`` is that name, lists the registries searched (the named one and its parents) and close matches, and
reminds of ``custom_imports`` - the usual cause (mmdet #10576, #11762).
"""
from __future__ import annotations

import difflib
import re
from typing import Any, Iterator, List, Optional, Tuple

from .errors import BadInputError

_MSG = re.compile(r"(?P<name>[\w.:]+) is not in the (?P<scope>[\w]+)::(?P<registry>[\w ]+?) registry")


class UnknownTypeError(BadInputError, KeyError):
    """A config names a type that is not registered."""

    def __str__(self) -> str:  # KeyError quotes its message; show it as written
        return str(self.args[0]) if self.args else ''


def _type_paths(node: Any, name: str, path: str = '') -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            sub = f'{path}.{key}' if path else str(key)
            if key == 'type' and isinstance(value, str) and value.split('.')[-1] == name.split('.')[-1]:
                yield sub
            else:
                yield from _type_paths(value, name, sub)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _type_paths(value, name, f'{path}[{i}]')


def _registry_chain(scope: str, registry_name: str) -> List[Tuple[str, List[str]]]:
    """(``scope::name``, registered names) for the registry named in the error and its parents."""
    try:
        import importlib
        mod = importlib.import_module(f'{scope}.registry')
    except ImportError:
        return []
    reg = None
    for value in vars(mod).values():
        if (getattr(value, 'name', None) == registry_name and getattr(value, 'scope', None) == scope
                and hasattr(value, 'module_dict')):
            reg = value
            break
    chain = []
    while reg is not None:
        chain.append((f'{reg.scope}::{reg.name}', sorted(reg.module_dict)))
        reg = reg.parent
    return chain


def explain_build_error(exc: BaseException, cfg: Any, filename: Optional[str]) -> Optional[UnknownTypeError]:
    """Return an :class:`UnknownTypeError` explaining ``exc`` if it is an unknown-type error, else None."""
    match = _MSG.search(str(exc))
    if match is None:
        return None
    name, scope, registry = match.group('name'), match.group('scope'), match.group('registry')
    as_dict = cfg.to_dict() if hasattr(cfg, 'to_dict') else cfg
    paths = list(_type_paths(as_dict, name)) or ['(key not found; built from code defaults)']
    chain = _registry_chain(scope, registry)
    searched = ', '.join(c[0] for c in chain) or f'{scope}::{registry}'
    known = sorted({n for _, names in chain for n in names})
    close = difflib.get_close_matches(name.split('.')[-1], known, n=5, cutoff=0.6)
    imports = (as_dict.get('custom_imports') or {}).get('imports') if isinstance(as_dict, dict) else None
    lines = [
        f"config {filename or '<in memory>'}: type '{name}' is not registered.",
        f"  key: {', '.join(paths)}",
        f'  registries searched: {searched}',
    ]
    if close:
        lines.append(f"  close matches: {', '.join(close)}")
    lines.append(f'  custom_imports: {imports!r} - the module that registers {name!r} must be imported there '
                 'and importable from the repository root (tools/*.py put it on sys.path).')
    return UnknownTypeError('\n'.join(lines))
