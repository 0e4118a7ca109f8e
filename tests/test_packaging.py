"""The package declares what it imports: every third-party module imported by ``autospikformer``
comes from a distribution listed in ``pyproject.toml``'s dependencies."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_modules() -> dict[str, list[str]]:
    """Top-level third-party module -> the package files that import it."""
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / "autospikformer").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in ("autospikformer", "__future__"):
                    continue
                found.setdefault(top, []).append(str(path.relative_to(ROOT)))
    return found


def test_every_imported_distribution_is_declared() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_normalise(re.split(r"[<>=!~\[ ;]", d)[0]) for d in project["dependencies"]}
    providers = importlib.metadata.packages_distributions()
    missing = {}
    for module, files in imported_modules().items():
        distributions = {_normalise(d) for d in providers.get(module, [module])}
        if not distributions & declared:
            missing[module] = files
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
    assert {"torch", "scipy", "sqlalchemy"} <= set(imported_modules())
