"""``besa sweep`` on tiny grids: Dask LocalCluster, skip on rerun, failed points, kill and resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("simulator.run", reason="the simulator's run API is not in this checkout yet")

from simulator.sweep import expand, load_sweep, read_parquet_once, run_sweep  # noqa: E402

TINY = """
[sweep]
preset = "vitcod"
mode = "cycle"
tokens = [1, 64]
seed = 0

[grid]
lines = [0, 16, 64]           # 0 lines is an impossible machine: those points must fail, not the sweep
dram_bytes_per_cycle = [82.5, 164.93]

[[workload]]
name = "tiny"
synthetic = "256x512*3:skewed=0.5"
"""


def _write(tmp_path: Path, text: str = TINY) -> Path:
    p = tmp_path / "tiny.toml"
    p.write_text(text)
    return p


def test_sweep_on_local_cluster_then_skip_on_rerun(tmp_path):
    spec = load_sweep(_write(tmp_path))
    out = tmp_path / "out"
    res = run_sweep(spec, out, workers=2, processes=False, progress=False)
    assert res.total == 3 * 2 * 2 and res.computed == 12 and res.skipped == 0
    df = pd.read_parquet(out / "results.parquet")
    assert len(df) == 12 and set(df["point_id"]) == {p.point_id for p in expand(spec)}
    bad = df[df["lines"] == 0]
    assert len(bad) == 4 and (bad["status"] == "error").all() and bad["error"].str.contains("lines").all()
    ok = df[df["lines"] > 0]
    assert (ok["status"] == "ok").all() and (ok["cycles"] > 0).all() and ok["error"].eq("").all()
    assert (ok["speedup"] - ok["dense_cycles"] / ok["cycles"]).abs().max() < 1e-12
    # more lines never cost more cycles for the same workload, bandwidth and token count
    piv = ok.pivot_table(index=["dram_bytes_per_cycle", "tokens"], columns="lines", values="cycles")
    assert (piv[64] <= piv[16]).all()
    csv = pd.read_csv(out / "results.csv", keep_default_na=False)
    assert len(csv) == 12
    # rerun: finished points are skipped, failed points retried (and fail again), nothing else recomputed
    before = df.set_index("point_id")["finished_at"]
    res2 = run_sweep(spec, out, workers=0, progress=False)
    assert res2.skipped == 8 and res2.computed == 4 and res2.failed == 4
    after = pd.read_parquet(out / "results.parquet").set_index("point_id")["finished_at"]
    assert len(after) == 12
    okids = ok["point_id"]
    assert (after[okids] == before[okids]).all()
    assert not list(out.glob(".*.tmp"))


def test_serial_and_dask_agree(tmp_path):
    spec = load_sweep(_write(tmp_path, TINY.replace("lines = [0, 16, 64]", "lines = [32]")))
    a = run_sweep(spec, tmp_path / "a", workers=0, progress=False).results.set_index("point_id").sort_index()
    b = run_sweep(spec, tmp_path / "b", workers=1, processes=False, progress=False).results.set_index("point_id").sort_index()
    assert (a["cycles"] == b["cycles"]).all()


def test_kill_midway_and_rerun(tmp_path):
    text = TINY.replace("lines = [0, 16, 64]", "lines = [8, 16, 32, 64, 128, 256]").replace(
        "dram_bytes_per_cycle = [82.5, 164.93]", "dram_bytes_per_cycle = [41.2, 82.5, 164.93, 329.9]").replace(
        "256x512*3", "1024x2048*6")
    sweep = _write(tmp_path, text)
    total = len(expand(load_sweep(sweep)))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "besa.cli", "sweep", str(sweep), "--out", str(out), "--workers", "1",
           "--flush-every", "0", "--no-progress", "--no-report"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 120
    n_before = 0
    while time.time() < deadline and proc.poll() is None:
        if (out / "results.parquet").is_file():
            n_before = len(read_parquet_once(out / "results.parquet"))
            if n_before >= 3:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep finished before it could be killed: make the grid bigger"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = pd.read_parquet(out / "results.parquet")  # readable: never half-written
    assert 3 <= len(killed) < total
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"({len(killed)} already done, {total - len(killed)} computed, 0 failed)" in r.stdout
    final = pd.read_parquet(out / "results.parquet")
    assert len(final) == total and final["point_id"].is_unique and (final["status"] == "ok").all()
    old = killed.set_index("point_id")["finished_at"]
    assert (final.set_index("point_id").loc[old.index, "finished_at"] == old).all()  # not redone
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
