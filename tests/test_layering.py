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
import sys
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


# ---------------------------------------------------------------- module graph: cycles and lazy imports
PACKAGES = ("besa", "besa_common", "pruning", "simulator", "reports")
# Every package is free of import cycles and of function-local imports of the project's own modules
# (issue 18).  A function-local import is only for a heavy OPTIONAL dependency.
CLEAN = PACKAGES
# (file, project module) -> why the import stays inside a function: a torch-side module on a torch-free path.
LAZY_OK = {
    ("besa/experiment/plan.py", "pruning.runfiles"): "imports torch; besa run --dry-run and the report's tests run without it",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _project_modules() -> dict[str, Path]:
    return {_module_name(f): f for pkg in PACKAGES for f in sorted((ROOT / pkg).rglob("*.py"))}


def _project_imports(path: Path, mods: dict[str, Path]) -> list[tuple[int, str, bool]]:
    """(line, imported project module, inside a function?) of every import in ``path``."""
    me = _module_name(path)
    is_pkg = path.name == "__init__.py"

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    out = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    pkg = me.split(".") if is_pkg else me.split(".")[:-1]
                    base = ".".join(pkg[: len(pkg) - child.level + 1] + ([child.module] if child.module else []))
                names = [f"{base}.{a.name}" for a in child.names] + [base]
            for target in {resolve(n) for n in names} - {None, me}:
                out.append((child.lineno, target, in_function))
            visit(child, inside)

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return out


def test_project_imports_resolves_lazy_and_relative_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "reports"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\ndef f():\n    from reports.b import x\n")
    (pkg / "b.py").write_text("x = 1\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    mods = {"reports": pkg / "__init__.py", "reports.a": pkg / "a.py", "reports.b": pkg / "b.py"}
    assert sorted(_project_imports(pkg / "a.py", mods)) == [(1, "reports", False), (1, "reports.b", False), (3, "reports.b", True)]


def test_no_function_local_imports_of_project_modules_in_clean_packages():
    mods = _project_modules()
    bad = []
    for name, path in mods.items():
        if name.split(".")[0] not in CLEAN:
            continue
        rel = path.relative_to(ROOT).as_posix()
        bad += [f"{rel}:{line} imports {t} inside a function" for line, t, lazy in _project_imports(path, mods) if lazy and (rel, t) not in LAZY_OK]
    assert not bad, "import at module level (function-local only for heavy optional dependencies, see LAZY_OK):\n" + "\n".join(bad)


def test_lazy_import_allowances_are_still_needed():
    mods = _project_modules()
    used = {(p.relative_to(ROOT).as_posix(), t) for p in mods.values() for _, t, lazy in _project_imports(p, mods) if lazy}
    assert set(LAZY_OK) <= used, f"stale LAZY_OK entries: {set(LAZY_OK) - used}"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_cycles_finds_a_loop_and_nothing_else():
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_import_cycle():
    """Lazy imports count: a loop closed by a function-local import is still a loop."""
    mods = _project_modules()
    graph = {m: {t for _, t, _ in _project_imports(p, mods)} for m, p in mods.items()}
    loops = [c for c in _cycles(graph) if any(m.split(".")[0] in CLEAN for m in c)]
    assert not loops, f"import cycles: {loops}"
