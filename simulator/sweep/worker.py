"""The worker side of a sweep: turn a batch of points into result rows (never raises).

Runs in Dask worker processes (or in the driver with ``workers = 0``).  The points of one machine
share ONE simulator call (only the token count differs); the workload comes from the shared cache
of :mod:`simulator.sweep.workloads` when the driver made one, else it is built once per process.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any


from simulator.sweep.points import Point
from simulator.sweep.store import RESULT_FIELDS
from simulator.totals import model_totals

# Seconds this process spent inside load_hardware + simulate() (the bench's "inside the simulator").
SIMULATE_SECONDS = [0.0]
_SHARED: dict[str, list] = {}  # per process: workload key -> workload mapped from the shared cache
_LOCAL: dict[str, list] = {}  # per process: workload key -> workload built here (no shared cache)


def _memoized(layer):
    """The same layer, its packed mask generated once and kept (a synthetic workload regenerates
    its masks on every ``load()``)."""
    cache: list = []

    def loader():
        if not cache:
            cache.append(layer.loader())
        return cache[0]

    return dataclasses.replace(layer, loader=loader)


def workload_for(p: Point, shared_index: str | None = None) -> list:
    """The simulator workload of ``p``: mapped from the shared cache when there is one, else built
    here once per process (keeping one such workload: a LLaMA-7B mask set is ~0.8 GB)."""
    if shared_index is not None:
        if p.workload_key not in _SHARED:
            from simulator.sweep.workloads import open_shared

            wl = open_shared(shared_index)
            if wl is not None:
                _SHARED[p.workload_key] = wl
        if p.workload_key in _SHARED:
            return _SHARED[p.workload_key]
    if p.workload_key not in _LOCAL:
        from simulator.sweep.workloads import build_layers

        _LOCAL.clear()
        _LOCAL[p.workload_key] = [_memoized(l) for l in build_layers(p.workload.synthetic, p.masks_path, p.seed)]
    return _LOCAL[p.workload_key]


def point_row(p: Point) -> dict[str, Any]:
    """The parameter columns of a point (also written for failed points)."""
    row = {"point_id": p.point_id, "preset": p.preset, "mode": p.mode, "workload": p.workload.name, "tokens": p.tokens, "seed": p.seed}
    row.update(dict(p.hw))
    return row


def totals(layers, tokens: int | None = None) -> dict[str, Any]:
    """Whole-workload totals of a simulated layers table (one sweep row), for one token count."""
    return totals_by_tokens(layers, [tokens])[0]


def totals_by_tokens(layers, tokens: list[int | None]) -> list[dict[str, Any]]:
    """The sweep row's result columns for each token count (None = all rows): the model totals of
    :func:`simulator.totals.model_totals` (the same numbers summary.json holds), under the
    results-table names (``speedup`` = Σ dense / Σ cycles) and only the columns the table has."""
    rows = []
    for tot in model_totals(layers, tokens):
        if "speedup_vs_dense" in tot:
            tot["speedup"] = tot.pop("speedup_vs_dense")
        rows.append({k: v for k, v in tot.items() if k in RESULT_FIELDS})
    return rows


def _one_line(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {msg}"[:500]


def run_group(points: list[Point], shared_index: str | None = None) -> list[dict[str, Any]]:
    """Simulate points that differ only in ``tokens`` with ONE simulator call; an error becomes
    every point's ``status``/``error``.  ``wall_s`` = the seconds of the whole evaluation (machine,
    simulation, totals) shared out per point."""
    t0 = time.perf_counter()
    p0 = points[0]
    rows = [point_row(p) for p in points]
    try:
        from simulator import hardware, run as simrun

        wl = workload_for(p0, shared_index)
        ts = time.perf_counter()
        hw = hardware.load_hardware(p0.preset, dict(p0.hw) or None)
        layers = simrun.simulate(wl, hw, p0.mode, sorted({p.tokens for p in points}))
        SIMULATE_SECONDS[0] += time.perf_counter() - ts
        for row, tot in zip(rows, totals_by_tokens(layers, [p.tokens for p in points])):
            row.update(tot)
            row["status"], row["error"] = "ok", ""
    except Exception as exc:  # recorded, never fatal: one bad point must not kill the sweep
        for row in rows:
            row["status"], row["error"] = "error", _one_line(exc)
    wall = round((time.perf_counter() - t0) / len(points), 6)
    now = time.time()
    for row in rows:
        row["wall_s"] = wall
        row["finished_at"] = now
    return rows


def run_points(points: list[Point], shared: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Run a batch of points (one Dask task), one simulator call per machine.  ``shared`` maps
    workload keys to their shared-cache index files."""
    from simulator.sweep.points import machines

    shared = shared or {}
    return [row for m in machines(points) for row in run_group(m, shared.get(m[0].workload_key))]


def failed_rows(points: list[Point], exc: BaseException) -> list[dict[str, Any]]:
    """Rows for points whose task died (a killed worker, an unpicklable result)."""
    now = time.time()
    return [{**point_row(p), "status": "error", "error": _one_line(exc), "wall_s": None, "finished_at": now} for p in points]
