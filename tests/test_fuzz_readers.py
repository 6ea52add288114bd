"""Property tests: random bytes and random TOML/JSON values fed to every reader of user files.

Readers: the masks file (``besa simulate --masks``), a run directory's manifest.json /
allocation.json (``besa report``), a hardware preset TOML (``besa simulate --hw FILE``), an
experiment TOML (``besa run --dry-run``) and a sweep TOML (``besa sweep``).  Property: the command
either succeeds (exit 0: the random value happened to be valid) or fails with exit status 2, ONE
line on stderr, no traceback, and nothing written.  In-process (``besa.cli.main``) for speed, plus
a few subprocess cases for realism.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from besa.cli import main
from besa_common.masks import write_masks

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
LAYER = "model.layers.0.mlp.up_proj"

# TOML values of every kind, including the ones that break naive code: huge ints, NaN, inf, -0.0,
# empty and nested lists, odd strings.
scalars = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, 1, -1, 2**31, 2**62, 2**63 - 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e-320, 1e300, 1e30, 0.0, -0.0]),
    st.booleans(),
    st.text(max_size=12),
)
toml_values = st.one_of(scalars, st.lists(scalars, max_size=4), st.lists(st.lists(scalars, max_size=2), max_size=2))
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
    lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(st.text(max_size=5), c, max_size=3)),
    max_leaves=6,
)


def toml_literal(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # JSON string escapes are valid TOML basic-string escapes
    return "[" + ", ".join(toml_literal(x) for x in v) + "]"


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if not p.name.endswith((".lock", ".lock.info"))}


def check(argv: list[str], root: Path, capsys, out: Path) -> int:
    before = files(root)
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:
        rc = exc.code
    err = capsys.readouterr().err
    assert rc in (0, 2), f"{argv}: exit {rc}: {err}"
    if rc == 2:
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert files(root) == before and not out.exists(), "a failing command wrote something"
    return rc


# ----------------------------------------------------------------------------- masks file
def _valid_masks(path: Path) -> bytes:
    keep = np.random.default_rng(0).random((8, 12)) < 0.5
    write_masks(path, {LAYER: keep}, {"method": "magnitude"})
    return path.read_bytes()


@SETTINGS
@given(data=st.binary(max_size=400))
def test_masks_random_bytes(data, capsys):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root / "m.safetensors").write_bytes(data)
        assert check(["simulate", "--masks", root / "m.safetensors", "--out", root / "o"], root, capsys, root / "o") == 2


@SETTINGS
@given(edits=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1, max_size=4), cut=st.one_of(st.none(), st.integers(min_value=0)))
def test_masks_damaged_valid_file(edits, cut, capsys):
    """A valid file with a few bytes overwritten and/or cut short: rejected unless the edit was a no-op."""
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        f = root / "m.safetensors"
        data = bytearray(_valid_masks(f))
        original = bytes(data)
        for pos, byte in edits:
            data[pos % len(data)] = byte
        if cut is not None:
            data = data[: cut % len(data)]
        f.write_bytes(bytes(data))
        rc = check(["simulate", "--masks", f, "--out", root / "o"], root, capsys, root / "o")
        if rc == 0:  # only header whitespace padding or an identical byte can change without meaning
            assert len(data) == len(original)


# ----------------------------------------------------------------------------- run-directory JSON (report)
def _run_dir(root: Path) -> Path:
    run = root / "runs" / "r"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"method": "magnitude", "target": 0.5, "model": "m"}))
    (run / "allocation.json").write_text(json.dumps({"layers": {LAYER: {"shape": [8, 12], "target": 0.5, "realised": 0.5}}}))
    return run


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(which=st.sampled_from(["manifest.json", "allocation.json"]), data=st.binary(max_size=200))
def test_report_json_random_bytes(which, data, capsys):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        run = _run_dir(root)
        (run / which).write_bytes(data)
        check(["report", run, "--out", root / "o"], root, capsys, root / "o")


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    key=st.sampled_from(["method", "target", "sparsity", "pattern", "wbits", "model"]), value=json_values.filter(lambda v: not isinstance(v, (str, type(None))))
)
def test_report_manifest_random_values(key, value, capsys):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        run = _run_dir(root)
        man = json.loads((run / "manifest.json").read_text())
        man[key] = value
        (run / "manifest.json").write_text(json.dumps(man))
        check(["report", run, "--out", root / "o"], root, capsys, root / "o")


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(value=json_values, field=st.sampled_from([None, "shape", "target", "realised", "block", "proj"]))
def test_report_allocation_random_values(value, field, capsys):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        run = _run_dir(root)
        alloc = json.loads((run / "allocation.json").read_text())
        if field is None:
            alloc["layers"] = value
        else:
            alloc["layers"][LAYER][field] = value
        (run / "allocation.json").write_text(json.dumps(alloc))
        check(["report", run, "--out", root / "o"], root, capsys, root / "o")


# ----------------------------------------------------------------------------- hardware preset TOML
def _preset_lines() -> list[str]:
    from simulator.hardware import PRESET_DIR

    return (PRESET_DIR / "vitcod.toml").read_text().splitlines()


@SETTINGS
@given(
    field=st.sampled_from(
        [
            "lines",
            "macs_per_line",
            "freq_mhz",
            "dram_bytes_per_cycle",
            "weight_bits",
            "tile_m",
            "tile_n",
            "tau",
            "gather_factor",
            "nm_n",
            "pipeline_fill",
            "index_format",
            "memory",
            "version",
        ]
    ),
    value=toml_values,
)
def test_hardware_preset_random_values(field, value, capsys):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        lines = [ln for ln in _preset_lines() if not ln.split("=")[0].strip() == field]
        (root / "hw.toml").write_text("\n".join(lines + [f"{field} = {toml_literal(value)}"]) + "\n")
        check(["simulate", "--hw", root / "hw.toml", "--synthetic", "8x16", "--out", root / "o"], root, capsys, root / "o")


@SETTINGS
@given(data=st.binary(max_size=300))
def test_hardware_preset_random_bytes(data, capsys):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root / "hw.toml").write_bytes(data)
        assert check(["simulate", "--hw", root / "hw.toml", "--synthetic", "8x16", "--out", root / "o"], root, capsys, root / "o") == 2


# ----------------------------------------------------------------------------- experiment TOML (besa run)
EXPERIMENT = {
    "experiment": {"name": "t", "seed": 0},
    "calibration": {"nsamples": 4, "seqlen": 16},
    "runs": {"methods": ["magnitude"], "sparsities": [0.5]},
    "simulate": {"preset": "vitcod", "tokens": [1]},
}


def _experiment_text(section: str, key: str, value) -> str:
    out = []
    for sec, table in EXPERIMENT.items():
        out.append(f"[[{sec}]]" if sec in ("runs", "simulate") else f"[{sec}]")
        table = dict(table)
        if sec == section:
            table[key] = value
        out += [f"{k} = {toml_literal(v)}" for k, v in table.items()]
    return "\n".join(out) + "\n"


@SETTINGS
@given(
    where=st.sampled_from(
        [
            ("experiment", "seed"),
            ("calibration", "nsamples"),
            ("calibration", "seqlen"),
            ("runs", "methods"),
            ("runs", "sparsities"),
            ("runs", "wbits"),
            ("runs", "patterns"),
            ("simulate", "tokens"),
            ("simulate", "preset"),
            ("simulate", "modes"),
        ]
    ),
    value=toml_values,
)
def test_experiment_random_values(where, value, capsys):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root / "e.toml").write_text(_experiment_text(*where, value))
        check(["run", root / "e.toml", "--out", root / "o", "--dry-run"], root, capsys, root / "o")


@SETTINGS
@given(data=st.binary(max_size=300))
def test_experiment_random_bytes(data, capsys):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root / "e.toml").write_bytes(data)
        check(["run", root / "e.toml", "--out", root / "o", "--dry-run"], root, capsys, root / "o")


# ----------------------------------------------------------------------------- sweep TOML
def _sweep_text(section: str, key: str, value) -> str:
    sweep = {"preset": "vitcod", "mode": "cycle", "tokens": [1]}
    grid = {"lines": [16]}
    workload = {"name": "w", "synthetic": "8x16:sparsity=0.5"}
    {"sweep": sweep, "grid": grid, "workload": workload}[section][key] = value
    text = "[sweep]\n" + "".join(f"{k} = {toml_literal(v)}\n" for k, v in sweep.items())
    text += "[grid]\n" + "".join(f"{k} = {toml_literal(v)}\n" for k, v in grid.items())
    text += "[[workload]]\n" + "".join(f"{k} = {toml_literal(v)}\n" for k, v in workload.items())
    return text


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    where=st.sampled_from(
        [
            ("sweep", "tokens"),
            ("sweep", "preset"),
            ("sweep", "mode"),
            ("sweep", "seed"),
            ("grid", "lines"),
            ("grid", "dram_bytes_per_cycle"),
            ("grid", "freq_mhz"),
            ("grid", "tau"),
            ("workload", "synthetic"),
        ]
    ),
    value=toml_values,
)
def test_sweep_random_values(where, value, capsys):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root / "s.toml").write_text(_sweep_text(*where, value))
        check(["sweep", root / "s.toml", "--out", root / "o", "--workers", "0", "--no-progress", "--no-report"], root, capsys, root / "o")


@SETTINGS
@given(data=st.binary(max_size=300))
def test_sweep_random_bytes(data, capsys):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root / "s.toml").write_bytes(data)
        assert check(["sweep", root / "s.toml", "--out", root / "o", "--workers", "0", "--no-progress"], root, capsys, root / "o") == 2


# ----------------------------------------------------------------------------- a few real processes
def test_subprocess_cases(tmp_path):
    """The same property through the real entry point (``python -m besa``): stderr is one line."""
    rng = np.random.default_rng(1)
    (tmp_path / "m.safetensors").write_bytes(rng.integers(0, 256, 300, dtype=np.uint8).tobytes())
    (tmp_path / "hw.toml").write_text("\n".join(_preset_lines()).replace("lines = 64", "lines = 1e30") + "\n")
    (tmp_path / "e.toml").write_bytes(rng.integers(0, 256, 100, dtype=np.uint8).tobytes())
    run = _run_dir(tmp_path)
    (run / "manifest.json").write_text('{"target": "abc"}')
    cases = [
        ["simulate", "--masks", tmp_path / "m.safetensors", "--out", tmp_path / "o"],
        ["simulate", "--hw", tmp_path / "hw.toml", "--synthetic", "8x16", "--out", tmp_path / "o"],
        ["run", tmp_path / "e.toml", "--out", tmp_path / "o"],
        ["report", run, "--out", tmp_path / "o"],
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for argv in cases:
        res = subprocess.run([sys.executable, "-m", "besa", *map(str, argv)], capture_output=True, text=True, env=env)
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, (argv, res.stderr)
        assert not (tmp_path / "o").exists()
