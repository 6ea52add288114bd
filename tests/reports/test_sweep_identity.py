"""Content-addressed sweep points: a rerun into the same folder after editing a preset file, a masks
file or a ``like=`` source recomputes EXACTLY the affected points and never returns a stale row;
``--dry-run`` counts the new points; databases of the name-keyed layout are refused in one line."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from besa_common.masks import write_masks
from besa_common.errors import UserError
from simulator.hardware import PRESET_DIR, load_hardware
from simulator.sweep import DB_NAME, expand, load_sweep, plan_sweep, read_machines, run_sweep


def _masks(path: Path, seed: int, density: float = 0.5) -> Path:
    rng = np.random.default_rng(seed)
    keep = {f"model.layers.0.mlp.{p}": rng.random((64, 96)) < density for p in ("up_proj", "gate_proj")}
    write_masks(path, keep, {"model": None, "method": "test"})
    return path


def _preset(path: Path, dram: float) -> Path:
    path.write_text(f'base = "vitcod"\nname = "mine"\ndram_bytes_per_cycle = {dram}\n')
    return path


def _sweep_file(d: Path, workloads: str, grid: str = "lines = [16, 32]") -> Path:
    text = f"""
[sweep]
preset = "hw/mine.toml"          # relative to this file
mode = ["dense", "cycle"]
tokens = [1, 64]

[grid]
{grid}

{workloads}
"""
    p = d / "sweep.toml"
    p.write_text(text)
    return p


def _run(spec_path: Path, out: Path):
    return run_sweep(load_sweep(spec_path), out, workers=0, progress=False, export=False)


def _cycles(res) -> dict[tuple, int]:
    ok = res.results[res.results["status"] == "ok"]
    return {(r.workload, r.mode, r.lines, r.tokens): int(r.cycles) for r in ok.itertuples()}


@pytest.fixture
def setup(tmp_path):
    (tmp_path / "hw").mkdir()
    (tmp_path / "m").mkdir()
    _preset(tmp_path / "hw" / "mine.toml", 256.0)
    _masks(tmp_path / "m" / "a.safetensors", 0)
    _masks(tmp_path / "m" / "b.safetensors", 1)
    wls = """
[[workload]]
name = "a"
masks = "m/a.safetensors"

[[workload]]
name = "b"
masks = "m/b.safetensors"

[[workload]]
name = "likeb"
synthetic = "32x96*2:like=m/b.safetensors"
"""
    return tmp_path, _sweep_file(tmp_path, wls)


def test_edited_preset_file_recomputes_every_point_and_matches_a_fresh_sweep(setup):
    d, spec = setup
    out = d / "out"
    first = _run(spec, out)
    assert (first.total, first.computed, first.failed) == (3 * 2 * 2 * 2, 24, 0)
    again = _run(spec, out)
    assert (again.skipped, again.computed) == (24, 0)
    _preset(d / "hw" / "mine.toml", 0.5)  # 512x less bandwidth: every point's result changes
    assert plan_sweep(load_sweep(spec), out).new == 24
    edited = _run(spec, out)
    assert (edited.skipped, edited.computed) == (0, 24)
    fresh = _run(spec, d / "fresh")
    new_rows = edited.results[edited.results["hw_id"].isin(set(fresh.results["hw_id"]))]
    assert len(new_rows) == 24
    assert _cycles(fresh) == {k: v for k, v in _cycles(edited).items() if k in _cycles(fresh)}
    old = _cycles(first)
    assert all(old[k] != v for k, v in _cycles(fresh).items())  # the edit changed results: no stale row kept
    machines = read_machines(out)  # every row's full machine is stored
    assert set(edited.results["hw_id"]) <= set(machines)
    assert {m["dram_bytes_per_cycle"] for m in machines.values()} == {256.0, 0.5}


def test_edited_masks_file_recomputes_exactly_its_points(setup):
    d, spec = setup
    out = d / "out"
    _run(spec, out)
    _masks(d / "m" / "a.safetensors", 7, density=0.2)  # same name, new contents
    plan = plan_sweep(load_sweep(spec), out)
    assert (plan.new, plan.workloads) == (8, 1)
    res = _run(spec, out)
    assert (res.skipped, res.computed) == (16, 8)
    fresh = _run(spec, d / "fresh")
    latest = res.results.sort_values("finished_at").groupby(["workload", "mode", "lines", "tokens"]).tail(1)
    got = {(r.workload, r.mode, r.lines, r.tokens): int(r.cycles) for r in latest.itertuples()}
    assert got == _cycles(fresh)  # the newest row of every point is the fresh sweep's
    assert set(res.results["workload_id"]) > set(fresh.results["workload_id"])  # the old a rows remain, under their own digest


def test_edited_like_source_recomputes_exactly_its_points(setup):
    d, spec = setup
    out = d / "out"
    _run(spec, out)
    _masks(d / "m" / "b.safetensors", 9, density=0.1)  # the like= source of "likeb" and the masks of "b"
    plan = plan_sweep(load_sweep(spec), out)
    assert (plan.new, plan.workloads) == (16, 2)
    res = _run(spec, out)
    assert (res.skipped, res.computed) == (8, 16)


def test_unchanged_inputs_keep_their_ids_and_relative_paths_follow_the_file(setup, tmp_path, monkeypatch):
    d, spec = setup
    monkeypatch.chdir(tmp_path.parent)  # paths resolve against the sweep file, not the working directory
    a = [p.point_id for p in expand(load_sweep(spec))]
    (d / "m" / "a.safetensors").touch()  # a new mtime, same bytes: same points
    b = [p.point_id for p in expand(load_sweep(spec))]
    assert a == b and len(set(a)) == len(a)


def test_same_machine_spelled_twice_is_one_machine(tmp_path):
    """The id is the RESOLVED machine's: a preset file equal to vitcod gives vitcod's ids."""
    (tmp_path / "copy.toml").write_text((PRESET_DIR / "vitcod.toml").read_text().replace('name = "vitcod"', 'name = "copy"'))
    body = '[sweep]\npreset = "{}"\ntokens = [1]\n[[workload]]\nname = "w"\nsynthetic = "64x64:sparsity=0.5"\n'
    (tmp_path / "a.toml").write_text(body.format("vitcod"))
    (tmp_path / "b.toml").write_text(body.format("copy.toml"))
    ida = {p.point_id for p in expand(load_sweep(tmp_path / "a.toml"))}
    idb = {p.point_id for p in expand(load_sweep(tmp_path / "b.toml"))}
    assert ida == idb
    assert load_hardware(str(tmp_path / "copy.toml")).name == "copy"


def test_old_database_is_refused_in_one_line(tmp_path, setup):
    d, spec = setup
    out = d / "old"
    out.mkdir()
    con = sqlite3.connect(out / DB_NAME)
    con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    con.executemany("INSERT INTO meta VALUES (?, ?)", [("format", "besa-sweep-results"), ("version", "1")])
    con.execute("CREATE TABLE results (point_id TEXT PRIMARY KEY NOT NULL, status TEXT, error TEXT)")
    con.commit()
    con.close()
    with pytest.raises(UserError, match="older besa sweep.*new --out"):
        _run(spec, out)
    with pytest.raises(UserError, match="older besa sweep"):
        plan_sweep(load_sweep(spec), out)
    r = subprocess.run([sys.executable, "-m", "besa.cli", "sweep", str(spec), "--out", str(out), "--workers", "0"], capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "new --out" in r.stderr
    # an export of the name-keyed layout (no digests) in a folder without a database: refused, nothing created
    legacy = d / "legacy"
    legacy.mkdir()
    (legacy / "results.csv").write_text("point_id,preset,mode,workload,tokens,seed,status,error,cycles\n0123,vitcod,cycle,a,1,0,ok,,5\n")
    with pytest.raises(UserError, match="older besa sweep"):
        _run(spec, legacy)
    assert not (legacy / DB_NAME).exists()


def test_dry_run_counts_new_points(setup):
    d, spec = setup
    out = d / "out"
    r = subprocess.run([sys.executable, "-m", "besa.cli", "sweep", str(spec), "--out", str(out), "--dry-run"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "24 points, 0 already done" in r.stdout and "24 new" in r.stdout and not (out / DB_NAME).exists()
    _run(spec, out)
    r = subprocess.run([sys.executable, "-m", "besa.cli", "sweep", str(spec), "--out", str(out), "--dry-run"], capture_output=True, text=True)
    assert "24 already done" in r.stdout and " 0 new" in r.stdout
    assert json.loads(json.dumps(read_machines(out)))  # the machines table reads back
