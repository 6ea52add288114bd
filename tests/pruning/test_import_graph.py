"""pruning's module graph (issue 18): no import cycle, and no function-local import of a project module
in pruning/ or in the commands built on it (besa/commands/{data,prune,eval,export}.py).  A lazy import
stays only for heavy optional dependencies (torch, transformers, lm_eval, compressed_tensors, ...).
Read with ast, nothing imported."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ("besa", "besa_common", "pruning", "simulator", "reports")
COMMANDS = [ROOT / "besa" / "commands" / f"{name}.py" for name in ("data", "prune", "eval", "export")]


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str, bool]]:
    """(line, imported name, inside a function?) of every import in ``path``; ``from a import b`` gives
    both ``a`` and ``a.b`` (b may be a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: list[tuple[int, str, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                out.extend((child.lineno, a.name, in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                assert child.level == 0, f"{path}:{child.lineno}: relative import"
                out.append((child.lineno, child.module, in_function))
                out.extend((child.lineno, f"{child.module}.{a.name}", in_function) for a in child.names)
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return out


def _pruning_graph() -> dict[str, set[str]]:
    files = {_module(p): p for p in sorted((ROOT / "pruning").rglob("*.py"))}

    def resolve(name: str) -> str | None:  # the longest prefix that is a pruning module
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    return {m: {t for _, name, _ in _imports(p) if (t := resolve(name)) and t != m} for m, p in files.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of modules (first = last), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def dfs(v: str) -> list[str] | None:
        state[v] = 1
        path.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                return path[path.index(w) :] + [w]
            if w not in state and (found := dfs(w)):
                return found
        path.pop()
        state[v] = 2
        return None

    for v in sorted(graph):
        if v not in state and (found := dfs(v)):
            return found
    return None


def test_cycle_finder_sees_a_loop_and_a_clean_graph():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_imports_sees_function_local_ones(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import os\ndef f():\n    from pruning.models import load_model\n    import torch\n")
    assert _imports(f) == [(1, "os", False), (3, "pruning.models", True), (3, "pruning.models.load_model", True), (4, "torch", True)]


def test_pruning_has_no_import_cycle():
    graph = _pruning_graph()
    assert "pruning.driver.loop" in graph and "pruning.methods.besa.method" in graph
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_function_local_import_of_a_project_module():
    files = sorted((ROOT / "pruning").rglob("*.py")) + COMMANDS
    bad = [f"{f.relative_to(ROOT)}:{line} imports {name}" for f in files for line, name, local in _imports(f) if local and name.split(".")[0] in PROJECT]
    assert not bad, "import these at module level (a lazy import is for heavy optional dependencies only):\n" + "\n".join(bad)
