"""The package layering of DESIGN.md, enforced by reading every import statement (ast, nothing imported).

    besa (entry layer: CLI, besa run, experiments, sweep CLI)  -> may import everything
    pruning (torch)    simulator (no torch)    reports (no torch; may read simulator)
    besa_common (errors, files, masks format, TOML, resources, extras) -> imports no stage

Imports inside functions count too: a lazy ``import torch`` in the simulator would still make
``besa simulate`` need torch.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# package -> top-level modules it must never import (at module level or inside a function)
FORBIDDEN: dict[str, set[str]] = {
    "besa_common": {"besa", "pruning", "simulator", "reports", "torch"},
    "pruning": {"besa", "simulator", "reports"},
    "simulator": {"besa", "pruning", "reports", "torch", "transformers"},
    "reports": {"besa", "pruning", "torch", "transformers"},
}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, top-level module) of every absolute import in ``path``; relative imports stay inside the package."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module.split(".")[0]))
    return out


def test_imported_modules_sees_lazy_and_from_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import os.path\nfrom torch import nn\nfrom . import sibling\ndef f():\n    import besa.cli as c\n")
    assert imported_modules(f) == [(1, "os"), (2, "torch"), (5, "besa")]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_downward(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package}/ has no Python files"
    bad = [f"{f.relative_to(ROOT)}:{line} imports {mod}" for f in files for line, mod in imported_modules(f) if mod in FORBIDDEN[package]]
    assert not bad, "layering violated (see DESIGN.md):\n" + "\n".join(bad)


def test_configs_package_holds_no_code():
    """configs/ is installed as the data package besa_configs: TOML/JSON files and its docstring only."""
    code = [p for p in (ROOT / "configs").rglob("*.py") if p.name != "__init__.py"]
    assert not code


def test_shipped_configs_are_located_in_one_place():
    """Only besa_common/resources.py turns "configs" into a path: everything else asks it, so an
    installed wheel (where the folder is the package besa_configs) finds the same files."""
    pattern = re.compile(r"""["']configs["']|["']configs/""")
    bad = []
    for package in ("besa", "besa_common", "pruning", "simulator", "reports"):
        for f in sorted((ROOT / package).rglob("*.py")):
            if f == ROOT / "besa_common" / "resources.py":
                continue
            bad += [f"{f.relative_to(ROOT)}:{i}" for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert not bad, "build config paths with besa_common.resources: " + ", ".join(bad)
