"""Packaging: declared dependencies vs the lock file, package data, the missing-extra message,
``besa --version`` and ``python -m besa``.  (The installed-wheel smoke test is scripts/smoke_install.sh, run by CI.)"""

from __future__ import annotations

import ast
import glob
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from besa import cli
from besa_common import extras, resources

ROOT = Path(__file__).resolve().parent.parent


def _setup_literals() -> dict[str, object]:
    """The literal top-level assignments of setup.py (CORE, EXTRAS, ...), read without running it."""
    out = {}
    for node in ast.parse((ROOT / "setup.py").read_text()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return out


def _setup_call_kwarg(name: str):
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup":
            for kw in node.keywords:
                if kw.arg == name:
                    return ast.literal_eval(kw.value)
    raise KeyError(name)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line.strip())
        assert m, f"requirements.txt: not an exact pin: {line!r} (regenerate with scripts/lock.sh)"
        pins[_norm(m.group(1))] = m.group(2)
    return pins


def test_lock_file_pins_every_declared_dependency():
    lits = _setup_literals()
    declared = list(lits["CORE"]) + [r for reqs in lits["EXTRAS"].values() for r in reqs]
    lock = _lock()
    names = {_norm(re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0]) for r in declared}
    # torch is installed first with its own pin (scripts/setup.sh), never from the lock file.
    missing = sorted(n for n in names - {"torch"} if n not in lock)
    assert not missing, f"declared in setup.py but not pinned in requirements.txt: {missing} (scripts/lock.sh)"
    assert "besa-toolkit" not in lock and "torch" not in lock


def test_extras_in_code_match_setup():
    declared = set(_setup_literals()["EXTRAS"])
    assert set(extras.EXTRAS) <= declared, set(extras.EXTRAS) - declared
    for extra in cli.NEEDS.values():
        assert set(extra) <= set(extras.EXTRAS)


def test_every_package_data_pattern_matches_a_file():
    package_dir = _setup_call_kwarg("package_dir")
    for pkg, patterns in _setup_call_kwarg("package_data").items():
        base = ROOT / package_dir.get(pkg, pkg.replace(".", "/"))
        for pat in patterns:
            assert glob.glob(str(base / pat)), f"package_data[{pkg!r}]: {pat!r} matches no file in {base}"


def test_shipped_configs_are_found_in_one_place():
    assert resources.configs_root() == ROOT / "configs"  # a checkout uses its own files
    assert {"vitcod", "besa-paper-array", "hbm-4k"} <= set(resources.config_names("hw"))
    assert resources.config_file("experiments", "default").is_file()
    with pytest.raises(ValueError):
        resources.config_dir("nope")


def test_missing_extra_is_one_line(monkeypatch, capsys):
    monkeypatch.setitem(extras.EXTRAS, "prune", ("no_such_module_besa_test",))
    assert cli.main(["prune", "--help"]) == 2
    err = capsys.readouterr().err
    assert err == "besa prune needs: pip install 'besa-toolkit[prune]'\n"


def test_late_import_error_of_an_extra_is_one_line(monkeypatch, capsys):
    """An optional module imported deep inside a command maps to its extra, not a traceback."""
    mod = types.ModuleType("besa_test_cmd")
    mod.add_arguments = lambda parser: None

    def run(args):
        raise ModuleNotFoundError("No module named 'lm_eval'", name="lm_eval")

    mod.run = run
    monkeypatch.setitem(sys.modules, "besa_test_cmd", mod)
    monkeypatch.setitem(cli.COMMANDS, "zz", ("besa_test_cmd", "test"))
    assert cli.main(["zz"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("besa zz needs: pip install 'besa-toolkit[zeroshot]'")


def test_unknown_missing_module_keeps_its_traceback(monkeypatch):
    mod = types.ModuleType("besa_test_cmd2")
    mod.add_arguments = lambda parser: None
    mod.run = lambda args: (_ for _ in ()).throw(ModuleNotFoundError("No module named 'nope'", name="nope"))
    monkeypatch.setitem(sys.modules, "besa_test_cmd2", mod)
    monkeypatch.setitem(cli.COMMANDS, "zz", ("besa_test_cmd2", "test"))
    with pytest.raises(ModuleNotFoundError):
        cli.main(["zz"])


def test_extra_for_module():
    assert extras.extra_for_module("torch.nn") == "prune"
    assert extras.extra_for_module("distributed") == "sweep"
    assert extras.extra_for_module("compressed_tensors.utils") == "export"
    assert extras.extra_for_module("numpy") is None
    assert extras.extra_for_module(None) is None


@pytest.mark.parametrize("argv", [[sys.executable, "-m", "besa", "--version"], [sys.executable, "-m", "besa.cli", "--version"]])
def test_version_and_python_m_besa(argv):
    r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(r"besa \S+\n", r.stdout), r.stdout


def test_python_m_besa_without_command_prints_help_and_exits_2():
    r = subprocess.run([sys.executable, "-m", "besa"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 2 and "simulate" in r.stdout


def test_repository_references_only_its_own_files():
    """Code, docs and scripts point at files inside the repository (docs/), never at an outside spec."""
    try:
        files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    pattern = re.compile(r"(\.\./shared/|shared/spec/|/work/)")
    bad = []
    for name in files:
        if name.startswith("tests/") or not (ROOT / name).is_file():
            continue
        try:
            text = (ROOT / name).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        bad += [f"{name}:{i}: {line.strip()[:80]}" for i, line in enumerate(text.splitlines(), 1) if pattern.search(line)]
    assert not bad, "references outside the repository:\n" + "\n".join(bad)
    for doc in ("docs/besa.md",):
        assert (ROOT / doc).is_file(), doc


def test_smoke_script_uses_existing_repository_paths():
    """scripts/smoke_install.sh runs only in CI (minutes): catch a moved fixture or file here, in a second."""
    text = (ROOT / "scripts" / "smoke_install.sh").read_text()
    paths = set(re.findall(r"(?<![\w/$.-])((?:tests|configs|scripts)/[\w./-]+)", text))
    assert paths, "no repository paths found in the smoke script"
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"scripts/smoke_install.sh refers to missing paths: {missing}"
