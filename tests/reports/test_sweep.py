"""``besa sweep`` on tiny grids: Dask LocalCluster, skip on rerun, failed points and exit 1, the
results database (kill -9 and resume, two writers, readers while writing), exports, the shared
workload cache."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from simulator.sweep import DB_NAME, ResultStore, expand, load_sweep, read_db, run_sweep  # noqa: E402

TINY = """
[sweep]
preset = "vitcod"
mode = "cycle"
tokens = [1, 64]
seed = 0

[grid]
nm_n = [2, 4]                 # nm_n = 4 with nm_m = 2 is an impossible machine: those points fail, not the sweep
nm_m = [2, 4]
lines = [16, 64]

[[workload]]
name = "tiny"
synthetic = "256x512*3:sparsity=0.5"
"""


def _write(tmp_path: Path, text: str = TINY, name: str = "tiny.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _rows(out: Path) -> pd.DataFrame:
    return read_db(out / DB_NAME)


def _besa(*args, **kw):
    return subprocess.run([sys.executable, "-m", "besa.cli", *args], capture_output=True, text=True, **kw)


def test_sweep_on_local_cluster_then_skip_on_rerun(tmp_path):
    spec = load_sweep(_write(tmp_path))
    out = tmp_path / "out"
    res = run_sweep(spec, out, workers=2, processes=False, progress=False)
    assert res.total == 2 * 2 * 2 * 2 and res.computed == 16 and res.skipped == 0 and res.failed == 4
    df = _rows(out)
    assert len(df) == 16 and set(df["point_id"]) == {p.point_id for p in expand(spec)}
    bad = df[(df["nm_n"] == 4) & (df["nm_m"] == 2)]
    assert len(bad) == 4 and (bad["status"] == "error").all() and bad["error"].str.contains("n > m").all()
    ok = df[df["status"] == "ok"]
    assert len(ok) == 12 and (ok["cycles"] > 0).all() and ok["error"].eq("").all()
    assert (ok["speedup"] - ok["dense_cycles"] / ok["cycles"]).abs().max() < 1e-12
    # more lines never cost more cycles for the same workload, n:m engine and token count
    piv = ok.pivot_table(index=["nm_n", "nm_m", "tokens"], columns="lines", values="cycles")
    assert (piv[64] <= piv[16]).all()
    # the exports hold the same rows as the database
    pq = pd.read_parquet(out / "results.parquet")
    csv = pd.read_csv(out / "results.csv", keep_default_na=False)
    assert len(pq) == len(csv) == 16 and set(pq["point_id"]) == set(df["point_id"])
    # rerun: finished points are skipped, failed points retried (and fail again), nothing else recomputed
    before = ok.set_index("point_id")["finished_at"]
    res2 = run_sweep(spec, out, workers=0, progress=False)
    assert res2.skipped == 12 and res2.computed == 4 and res2.failed == 4
    after = _rows(out).set_index("point_id")
    assert len(after) == 16 and after.index.is_unique
    assert (after.loc[before.index, "finished_at"] == before).all()
    assert not list(out.glob(".*tmp")) and not (out / ".workloads").exists()


def test_serial_and_dask_agree(tmp_path):
    spec = load_sweep(_write(tmp_path, TINY.replace("nm_m = [2, 4]", "nm_m = [4]")))
    a = run_sweep(spec, tmp_path / "a", workers=0, progress=False).results.set_index("point_id").sort_index()
    b = run_sweep(spec, tmp_path / "b", workers=1, processes=True, progress=False).results.set_index("point_id").sort_index()
    assert len(a) == 8 and (a["status"] == "ok").all()
    assert (a["cycles"] == b["cycles"]).all() and (a["bytes_index"] == b["bytes_index"]).all()


def test_cli_exit_codes_and_failed_count(tmp_path):
    sw = _write(tmp_path)
    r = _besa("sweep", str(sw), "--out", str(tmp_path / "o"), "--workers", "0", "--no-progress", "--no-report", timeout=300)
    assert r.returncode == 1, r.stderr
    err = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(err) == 1 and "4 of 16 points failed" in err[0] and "n > m" in err[0]
    ok = _write(tmp_path, TINY.replace("nm_n = [2, 4]", "nm_n = [2]"), "ok.toml")
    r = _besa("sweep", str(ok), "--out", str(tmp_path / "o2"), "--workers", "0", "--no-progress", "--no-report", timeout=300)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr
    # --export rewrites the exports from the database alone
    (tmp_path / "o2" / "results.csv").unlink()
    r = _besa("sweep", "--export", str(tmp_path / "o2"))
    assert r.returncode == 0 and len(pd.read_csv(tmp_path / "o2" / "results.csv")) == 8
    r = _besa("sweep", "--export", str(tmp_path))
    assert r.returncode == 2 and "no results.sqlite" in r.stderr and len(r.stderr.strip().splitlines()) == 1


BIG = (
    TINY.replace("nm_n = [2, 4]\n", "")
    .replace("nm_m = [2, 4]\n", "")
    .replace("lines = [16, 64]", "lines = [8, 16, 32, 64, 128, 256]\ndram_bytes_per_cycle = [41.2, 82.5, 164.93, 329.9]")
    .replace("256x512*3", "1024x2048*6")
)


def _wait_rows(out: Path, n: int, proc, timeout: float = 180) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if (out / DB_NAME).is_file():
            try:
                k = len(_rows(out))
            except Exception:  # the writer is creating the schema right now
                k = 0
            if k >= n:
                return k
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} rows appeared (exit {proc.poll()}): {proc.stderr.read() if proc.poll() is not None else ''}")


def test_kill_9_midway_then_resume(tmp_path):
    """A real SIGKILL of the sweep's process group: committed rows survive, the rerun adds exactly the rest."""
    sweep = _write(tmp_path, BIG)
    total = len(expand(load_sweep(sweep)))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "besa.cli", "sweep", str(sweep), "--out", str(out), "--workers", "1", "--no-progress", "--no-report"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    seen = _wait_rows(out, 3, proc)
    assert proc.poll() is None, "the sweep finished before it could be killed: make the grid bigger"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = _rows(out)  # readable after a kill -9, and nothing committed was lost
    assert seen <= len(killed) < total and killed["point_id"].is_unique
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"({len(killed)} already done, {total - len(killed)} computed, 0 failed)" in r.stdout
    final = _rows(out)
    assert len(final) == total and final["point_id"].is_unique and (final["status"] == "ok").all()
    old = killed.set_index("point_id")["finished_at"]
    assert (final.set_index("point_id").loc[old.index, "finished_at"] == old).all()  # not redone
    assert not [p for p in out.rglob("*") if p.name.endswith("tmp")] and not (out / ".workloads").exists()


MANY = """
[sweep]
preset = "vitcod"
tokens = [1]
[grid]
pipeline_fill = [%s]
[[workload]]
name = "small"
synthetic = "64x64:sparsity=0.5"
""" % ", ".join(str(i) for i in range(1500))


def test_second_writer_fails_at_once_naming_the_holder_then_waits(tmp_path):
    """Two real processes on one --out: the second fails at once naming the first; a third with
    --wait takes over when the first is stopped; no committed row is lost or computed twice."""
    sweep = _write(tmp_path, MANY)
    total = len(expand(load_sweep(sweep)))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "besa.cli", "sweep", str(sweep), "--out", str(out), "--workers", "0", "--no-progress", "--no-report"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    waiter = None
    try:
        _wait_rows(out, 1, first)
        t0 = time.time()
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert first.poll() is None, "the first sweep finished too early: make the grid bigger"
        assert second.returncode == 2 and time.time() - t0 < 30
        msg = second.stderr.strip().splitlines()
        assert len(msg) == 1 and f"pid {first.pid}" in msg[0] and "--wait" in msg[0], second.stderr
        waiter = subprocess.Popen(cmd + ["--wait"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        notice = waiter.stderr.readline()  # blocks until the waiter has found the lock taken
        assert "waiting for it" in notice and f"pid {first.pid}" in notice and first.poll() is None
        by_first = _rows(out)  # committed by the first before it is stopped: must all survive, untouched
        first.send_signal(signal.SIGTERM)  # unwinds like Ctrl-C: finished points are already committed
        assert first.wait(timeout=60) == 130
        w_out, w_err = waiter.communicate(timeout=600)
        assert waiter.returncode == 0, w_err
        m = re.search(r"\((\d+) already done, (\d+) computed, 0 failed\)", w_out)
        assert m and int(m.group(1)) >= len(by_first) >= 1 and int(m.group(1)) + int(m.group(2)) == total, w_out
    finally:
        for p in (first, waiter):
            if p is not None and p.poll() is None:
                p.kill()
    final = _rows(out).set_index("point_id")
    assert len(final) == total and final.index.is_unique and (final["status"] == "ok").all()
    old = by_first.set_index("point_id")["finished_at"]
    assert (final.loc[old.index, "finished_at"] == old).all()


def test_store_upsert_never_loses_an_ok_row_and_readers_see_commits(tmp_path):
    """Two writers on one database (no lock: the database alone must not lose rows)."""
    a, b = ResultStore(tmp_path), ResultStore(tmp_path)
    a.add([{"point_id": "p1", "status": "ok", "error": "", "cycles": 10.0}])
    b.add([{"point_id": "p1", "status": "error", "error": "boom"}, {"point_id": "p2", "status": "error", "error": "x", "lines": 16}])
    a.add([{"point_id": "p2", "status": "ok", "error": "", "cycles": 7.0, "lines": 16}, {"point_id": "p3", "status": "ok", "error": ""}])
    b.add([{"point_id": "p2", "status": "error", "error": "late"}])
    df = read_db(tmp_path / DB_NAME).set_index("point_id")
    assert list(df.index) == ["p1", "p2", "p3"] and (df["status"] == "ok").all()
    assert df.loc["p1", "cycles"] == 10.0 and df.loc["p2", "cycles"] == 7.0 and df.loc["p2", "lines"] == 16
    # a reader is not blocked by a writer holding its write transaction open
    b.con.execute("BEGIN IMMEDIATE")
    b.con.execute("INSERT INTO results (point_id, status) VALUES ('p4', 'ok')")
    t0 = time.time()
    assert len(read_db(tmp_path / DB_NAME)) == 3 and time.time() - t0 < 5  # sees the committed state only
    b.con.execute("COMMIT")
    assert len(read_db(tmp_path / DB_NAME)) == 4
    a.close()
    b.close()


def test_legacy_parquet_folder_is_taken_over(tmp_path):
    spec = load_sweep(_write(tmp_path, TINY.replace("nm_n = [2, 4]", "nm_n = [2]")))
    out = tmp_path / "out"
    first = run_sweep(spec, out, workers=0, progress=False)
    (out / DB_NAME).unlink()  # what an earlier version left: the Parquet file only
    res = run_sweep(spec, out, workers=0, progress=False)
    assert res.skipped == first.total and res.computed == 0 and len(_rows(out)) == first.total


def test_bad_database_is_one_line(tmp_path):
    (tmp_path / DB_NAME).write_bytes(b"not a database at all" * 100)
    spec = load_sweep(_write(tmp_path))
    with pytest.raises(Exception) as exc:
        run_sweep(spec, tmp_path, workers=0, progress=False)
    assert "not a sweep results database" in str(exc.value) and "\n" not in str(exc.value)
    other = tmp_path / "other"
    other.mkdir()
    with sqlite3.connect(other / DB_NAME) as con:  # an SQLite file of something else
        con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        con.execute("INSERT INTO meta VALUES ('format', 'something-else')")
    with pytest.raises(Exception, match="this build reads"):
        run_sweep(spec, other, workers=0, progress=False)


def test_shared_workload_is_bit_identical_and_generated_once(tmp_path):
    """Layers generated in parallel by Dask workers into one file = the masks generated in place."""
    from distributed import Client, LocalCluster

    from simulator import workload as simwl
    from simulator.sweep import workloads as shared

    spec = "300x200*5:skewed=0.5"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cl, Client(cl) as client:
        idx = shared.materialize(tmp_path / "c", "k", spec, None, 7, client=client, parts=3)
    mapped = shared.open_shared(idx)
    direct = simwl.synthetic(spec, 7)
    assert [l.name for l in mapped] == [l.name for l in direct]
    for m, d in zip(mapped, direct):
        assert (m.load() == d.load()).all() and not m.load().flags.writeable
    mtime = (tmp_path / "c" / "k.bin").stat().st_mtime_ns
    assert shared.materialize(tmp_path / "c", "k", spec, None, 7) == idx  # reused, not regenerated
    assert (tmp_path / "c" / "k.bin").stat().st_mtime_ns == mtime


IDENT = """
[sweep]
preset = "vitcod"
mode = "cycle"
tokens = [1, 64]
seed = 3

[grid]
lines = [16, 64]
index_format = ["bitmap", "rle"]
macs_per_line = [4, 8]

[[workload]]
name = "skewed"
synthetic = "96x160*3:skewed=0.5"
"""


@pytest.mark.parametrize("workers", [0, 2, 4])  # 4 workers: more layer slices than layers (one empty)
def test_rows_bit_identical_to_besa_simulate(tmp_path, workers):
    """Every sweep row (statistics computed once per workload and shared by the machines) holds
    exactly the totals of a separate ``besa simulate`` of that point's machine (summary.json)."""
    import json

    spec = load_sweep(_write(tmp_path, IDENT))
    res = run_sweep(spec, tmp_path / "out", workers=workers, processes=False, progress=False)
    rows = res.results.set_index("point_id")
    assert len(rows) == 16 and (rows["status"] == "ok").all()
    for i, p in enumerate(expand(spec)[::2]):  # one machine = two token counts
        sets = [a for k, v in p.hw for a in ("--set", f"{k}={v}")]
        sim = tmp_path / f"sim{i}"
        r = _besa("simulate", "--synthetic", p.workload.synthetic, "--seed", "3", "--hw", "vitcod", *sets, "--tokens", "1,64", "--out", str(sim), timeout=300)
        assert r.returncode == 0, r.stderr
        totals = json.loads((sim / "summary.json").read_text())["totals"]
        for q in expand(spec):
            if q.hw == p.hw:
                row, want = rows.loc[q.point_id], totals[str(q.tokens)]
                for col in ("cycles", "dense_cycles", "stall_cycles", "bytes_weights", "bytes_index", "bytes_act", "bytes_out", "lb_ideal", "layers"):
                    assert row[col] == want[col], (q.hw, q.tokens, col)
                assert row["speedup"] == want["speedup_vs_dense"] and row["utilization"] == want["utilization"]
                assert row["memory_bound_share"] == want["memory_bound_share"]
                for col in ("energy_uj", "dense_energy_uj", "energy_vs_dense"):
                    assert row[col] == want[col], (q.hw, q.tokens, col)


def test_layer_slices_reassemble_to_one_simulator_call():
    """run_slice over k slices + assemble = run_points (one simulator call per machine), for every
    k (an empty slice included), with the statistics of each slice's process kept across machines;
    an impossible machine fails in every slice and is one failed row per point."""
    from simulator.sweep import worker

    text = IDENT.replace("macs_per_line = [4, 8]", "nm_n = [2, 4]\nnm_m = [2]").replace("96x160*3", "64x96*5")
    spec = parse_sweep_text(text)
    points = expand(spec)
    want = worker.run_points(points)
    for k in (1, 2, 3, 7):
        got = worker.assemble(points, [worker.run_slice(points, None, i, k) for i in range(k)])
        strip = lambda rows: [{c: v for c, v in r.items() if c not in ("wall_s", "finished_at")} for r in rows]
        assert strip(got) == strip(want), k
    bad = [r for r in want if r["nm_n"] == 4]
    assert bad and all(r["status"] == "error" and "n > m" in r["error"] for r in bad)


def parse_sweep_text(text: str):
    import tomllib

    from simulator.sweep import parse_sweep

    return parse_sweep(tomllib.loads(text), source="test")


def test_scheduler_address_runs_on_that_cluster(tmp_path):
    """--scheduler ADDRESS: an existing cluster (work stealing on, as a user's may be) gives the rows
    of a serial run; an unreachable address is one line."""
    from distributed import LocalCluster

    from besa_common.errors import UserError

    spec = load_sweep(_write(tmp_path, IDENT))
    serial = run_sweep(spec, tmp_path / "a", workers=0, progress=False).results.set_index("point_id").sort_index()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cl:
        res = run_sweep(spec, tmp_path / "b", scheduler=cl.scheduler_address, progress=False)
    got = res.results.set_index("point_id").sort_index()
    assert res.computed == 16 and res.failed == 0
    for col in ("cycles", "dense_cycles", "bytes_index", "speedup", "utilization"):
        assert (got[col] == serial[col]).all(), col
    with pytest.raises(UserError, match="cannot reach the Dask scheduler"):
        run_sweep(spec, tmp_path / "c", scheduler="tcp://127.0.0.1:9", progress=False)
