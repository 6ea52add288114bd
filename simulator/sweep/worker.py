"""The worker side of a sweep: turn a batch of points into result rows (never raises).

Runs in Dask worker processes (or in the driver with ``workers = 0``).  The points of one machine
share ONE simulator call (only the token count differs); the workload comes from the shared cache
of :mod:`simulator.sweep.workloads` when the driver made one, else it is built once per process.

Mask statistics (:class:`simulator.stats.MaskStats`, one per layer) are kept by the process: each
is computed the first time a machine needs it and reused by every later machine, so a machine
costs its cycle search, not another pass over the masks.  On Dask the layers are split into
SLICES, one per worker, and each worker simulates only its slice's layers for every machine
(:func:`run_slice`): every statistic of the sweep is computed once, by the one worker that owns
its layer, and only the statistics some machine asks for.  The driver puts a machine's slices back
together in layer order (:func:`assemble`): the same rows, in the same order, as one simulator
call over the whole workload, hence bit-identical totals.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import pandas as pd

from besa_common.errors import UserError
from simulator import run as simrun
from simulator.run import SIMULATOR_VERSION
from simulator.schema import LAYER_COLUMNS, RESULT_FIELDS, SWEEP_TOTAL_NAMES
from simulator.stats import MaskStats
from simulator.sweep.points import Point, machines
from simulator.sweep.results import point_results
from simulator.sweep.workloads import build_layers, open_shared
from simulator.totals import model_totals

# Seconds this process spent inside simulate() (the bench's "inside the simulator").
SIMULATE_SECONDS = [0.0]
_SHARED: dict[tuple, list] = {}  # per process: workload -> workload mapped from the shared cache
_LOCAL: dict[tuple, list] = {}  # per process: workload -> workload built here (no shared cache)
_STATS: dict[tuple, dict[int, Any]] = {}  # per process: workload -> {layer: its MaskStats} (one workload kept)


def _memoized(layer):
    """The same layer, its packed mask generated once and kept (a synthetic workload regenerates
    its masks on every ``load()``)."""
    cache: list = []

    def loader():
        if not cache:
            cache.append(layer.loader())
        return cache[0]

    return dataclasses.replace(layer, loader=loader)


def _key(p: Point, shared_index: str | None) -> tuple:
    """What a process-wide cache entry must match: the workload, where it is mapped from, and a
    masks file's modification time (a long-lived worker must not reuse a rewritten file's masks)."""
    mtime = None
    if p.masks_path:
        try:
            mtime = os.stat(p.masks_path).st_mtime_ns
        except OSError:
            pass
    return (p.workload_key, shared_index, mtime)


def workload_for(p: Point, shared_index: str | None = None) -> tuple[tuple, list]:
    """(cache key, the simulator workload of ``p``): mapped from the shared cache when there is one,
    else built here once per process (keeping one such workload: a LLaMA-7B mask set is ~0.8 GB)."""
    key = _key(p, shared_index)
    if shared_index is not None:
        if key not in _SHARED:
            wl = open_shared(shared_index)
            if wl is not None:
                _SHARED[key] = wl
        if key in _SHARED:
            return key, _SHARED[key]
    key = _key(p, None)
    if key not in _LOCAL:
        _LOCAL.clear()
        _LOCAL[key] = [_memoized(l) for l in build_layers(p.workload.synthetic, p.masks_path, p.seed)]
    return key, _LOCAL[key]


def stats_for(key: tuple, workload: list, which: list[int] | range) -> list:
    """The MaskStats of layers ``which`` of ``workload`` (cache ``key``), kept by this process:
    each made on first use (one pass over its mask for the counts; the mask itself is the shared
    mapping or this process's memoised copy, so holding it costs nothing), its lazy statistics
    filled by the machines that need them.  One workload at a time (LLaMA-7B: up to ~150 MB)."""
    have = _STATS.get(key)
    if have is None:
        _STATS.clear()
        have = _STATS[key] = {}
    out = []
    for i in which:
        st = have.get(i)
        if st is None:
            layer = workload[i]
            st = have[i] = MaskStats(layer.rows, layer.cols, packed=layer.load())
        out.append(st)
    return out


def point_row(p: Point) -> dict[str, Any]:
    """The parameter columns of a point (also written for failed points)."""
    row = {
        "point_id": p.point_id,
        "preset": p.preset,
        "mode": p.mode,
        "workload": p.workload.name,
        "tokens": p.tokens,
        "context": p.context,
        "batch": p.batch,
        "seed": p.seed,
        "hw_id": p.hw_id,
        "workload_id": p.workload_key,
        "simulator_version": SIMULATOR_VERSION,
    }
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
        for name, sweep_name in SWEEP_TOTAL_NAMES.items():
            if name in tot:
                tot[sweep_name] = tot.pop(name)
        rows.append({k: v for k, v in tot.items() if k in RESULT_FIELDS})
    return rows


def _one_line(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {msg}"[:500]


def _simulate(points: list[Point], shared_index: str | None, part: int, parts: int) -> pd.DataFrame:
    """layers.csv's rows of the machine of ``points`` for the layers ``part::parts`` (all: 0, 1),
    with their index in the workload as column ``_layer`` when ``parts > 1``."""
    p0 = points[0]
    if p0.hardware is None:
        raise UserError(p0.invalid or "no machine")
    key, wl = workload_for(p0, shared_index)
    which = range(part, len(wl), parts)
    hw = p0.hardware
    tokens = sorted({p.tokens for p in points})
    if not which:  # more slices than layers
        return pd.DataFrame(columns=[*LAYER_COLUMNS, "_layer"])
    df = simrun.simulate([wl[i] for i in which], hw, p0.mode, tokens, stats=stats_for(key, wl, which))
    if parts > 1:  # simulate()'s rows: token-major, the layers in order within each token count
        df["_layer"] = [i for _ in tokens for i in which]
    return df


def _rows(points: list[Point], layers: pd.DataFrame | None, error: str | None, seconds: float) -> list[dict[str, Any]]:
    """The rows of one machine's points: its totals per token count, or its error.  ``wall_s`` =
    (``seconds`` already spent on it + the totals) / points."""
    t0 = time.perf_counter()
    rows = [point_row(p) for p in points]
    if error is None:
        try:
            for row, tot in zip(rows, point_results(layers, points)):
                row.update(tot)
                row["status"], row["error"] = "ok", ""
        except Exception as exc:  # recorded, never fatal
            error = _one_line(exc)
    if error is not None:
        for row in rows:
            row["status"], row["error"] = "error", error
    wall = round((seconds + time.perf_counter() - t0) / len(points), 6)
    now = time.time()
    for row in rows:
        row["wall_s"] = wall
        row["finished_at"] = now
    return rows


def run_group(points: list[Point], shared_index: str | None = None) -> list[dict[str, Any]]:
    """Simulate points that differ only in ``tokens`` with ONE simulator call; an error becomes
    every point's ``status``/``error``.  ``wall_s`` = the seconds of the whole evaluation (machine,
    simulation, totals) shared out per point."""
    t0 = time.perf_counter()
    layers, error = None, None
    try:
        layers = _simulate(points, shared_index, 0, 1)
    except Exception as exc:  # recorded, never fatal: one bad point must not kill the sweep
        error = _one_line(exc)
    SIMULATE_SECONDS[0] += time.perf_counter() - t0
    return _rows(points, layers, error, time.perf_counter() - t0)


def run_points(points: list[Point], shared: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Run a batch of points (one Dask task, or serially), one simulator call per machine.
    ``shared`` maps workload keys to their shared-cache index files."""
    shared = shared or {}
    return [row for m in machines(points) for row in run_group(m, shared.get(m[0].workload_key))]


def run_slice(points: list[Point], shared: dict[str, str] | None, part: int, parts: int) -> list[tuple[pd.DataFrame | None, str | None, float]]:
    """Layers ``part::parts`` of every machine of a batch (one Dask task, on the worker that owns
    that slice): per machine, (its rows with ``_layer``, None, seconds) or (None, one-line error,
    seconds).  Never raises."""
    shared = shared or {}
    out = []
    for m in machines(points):
        t0 = time.perf_counter()
        try:
            out.append((_simulate(m, shared.get(m[0].workload_key), part, parts), None, time.perf_counter() - t0))
        except Exception as exc:  # recorded, never fatal
            out.append((None, _one_line(exc), time.perf_counter() - t0))
    return out


def assemble(points: list[Point], slices: list[list[tuple[pd.DataFrame | None, str | None, float]]]) -> list[dict[str, Any]]:
    """The rows of a batch from the :func:`run_slice` results of all its slices: each machine's
    layer rows put back in the order of one simulator call (token count, then layer), then its
    totals; a machine with a failed slice is failed with that slice's error."""
    rows = []
    for k, m in enumerate(machines(points)):
        t0 = time.perf_counter()
        parts = [s[k] for s in slices]
        seconds = sum(x[2] for x in parts)
        error = next((x[1] for x in parts if x[1] is not None), None)
        layers = None
        frames = [x[0] for x in parts if x[1] is None and len(x[0])]
        if error is None and not frames:
            error = "UserError: empty workload: no layers to simulate"
        if error is None:
            layers = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
            if "_layer" in layers.columns:
                layers = layers.sort_values(["tokens", "_layer"], kind="stable").drop(columns="_layer").reset_index(drop=True)
        rows.extend(_rows(m, layers, error, seconds + time.perf_counter() - t0))
    return rows


def failed_rows(points: list[Point], exc: BaseException) -> list[dict[str, Any]]:
    """Rows for points whose task died (a killed worker, an unpicklable result)."""
    now = time.time()
    return [{**point_row(p), "status": "error", "error": _one_line(exc), "wall_s": None, "finished_at": now} for p in points]
