"""What-if sweeps: a grid of hardware variants × workloads × token counts, run on Dask distributed.

A sweep file (TOML, see ``configs/sweeps/``)::

    [sweep]
    preset = "vitcod"            # base hardware preset; [grid] values override its fields
    mode = "cycle"               # simulation mode
    tokens = [1, 2048]           # N, tokens in flight
    seed = 0                     # seed of synthetic workloads

    [grid]                       # hardware field -> list of values; the cartesian product is swept
    lines = [16, 32, 64, 128]
    bandwidth = [41.2, 82.4, 164.9]

    [[workload]]                 # one or more; masks = a masks file, or synthetic = a simulator spec
    name = "llama7b-50"
    synthetic = "llama-7b:skewed=0.5"   # simulator.workload.synthetic spec: SHAPE[:PATTERN]

Every point (preset, mode, hardware overrides, workload, tokens, seed) has a STABLE id (a hash of
those values), so a rerun skips the points already in ``OUT/results.parquet`` and only computes
the rest.  A point that raises is recorded with ``status = "error"`` and its one-line error and
does not stop the sweep (failed points are retried on the next run).  Results are rewritten
atomically (temp file + rename) every few seconds and at the end, so killing the sweep loses at
most the last few seconds of work and never leaves a half-written file.

Result rows (one per point, whole-workload totals): the swept fields, ``workload``, ``tokens``,
``cycles`` (Σ over layers), ``dense_cycles``, ``nm_cycles``, ``speedup`` = dense_cycles / cycles,
``speedup_vs_nm``, ``stall_cycles``, bytes by class, ``memory_bound_share`` (fraction of layers
whose bound is memory), ``wall_s`` (seconds spent simulating), ``status``, ``error``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd

from besa_common.tomlconf import build, check_value, read_toml
from besa_common.errors import UserError
from besa_common.fileio import atomic_write_bytes, atomic_write_text

# Columns that are results, not swept parameters (the heatmap uses this to find the swept axes).
RESULT_FIELDS = {
    "point_id", "status", "error", "wall_s", "cycles", "dense_cycles", "nm_cycles", "speedup", "speedup_vs_nm",
    "stall_cycles", "dense_engine_cycles", "sparse_engine_cycles", "bytes_weights", "bytes_index", "bytes_act", "bytes_out",
    "memory_bound_share", "layers", "utilization", "lb_ideal", "lb_split", "seed", "finished_at",
}
# Sum these layers.csv columns over layers for a point's totals.
_SUM_COLUMNS = ("cycles", "dense_cycles", "nm_cycles", "stall_cycles", "dense_engine_cycles", "sparse_engine_cycles",
                "bytes_weights", "bytes_index", "bytes_act", "bytes_out", "lb_ideal", "lb_split")


@dataclass(frozen=True)
class WorkloadSpec:
    """One workload: a masks file (``masks``, relative to the sweep file) or a synthetic spec
    (``synthetic``, :func:`simulator.workload.synthetic`'s ``SHAPE[:PATTERN]``, e.g. ``llama-7b:skewed=0.5``)."""

    name: str
    masks: str | None = None
    synthetic: str | None = None

    def identity(self, base: Path | None = None) -> dict[str, Any]:
        """What decides the workload's contents (hashed into point ids)."""
        ident = dataclasses.asdict(self)
        if self.masks:
            p = self.resolved_masks(base)
            ident["masks"] = str(p)
            ident["masks_bytes"] = p.stat().st_size if p.is_file() else None
        return ident

    def resolved_masks(self, base: Path | None = None) -> Path:
        p = Path(os.path.expanduser(self.masks or ""))
        return p if p.is_absolute() or base is None else (base / p)


@dataclass(frozen=True)
class SweepSettings:
    preset: str = "vitcod"
    mode: str = "cycle"
    tokens: tuple[int, ...] = (1,)
    seed: int = 0


@dataclass(frozen=True)
class SweepSpec:
    settings: SweepSettings
    grid: tuple[tuple[str, tuple[Any, ...]], ...]  # (hardware field, values), in file order
    workloads: tuple[WorkloadSpec, ...]
    base: Path | None = None  # folder relative masks paths are resolved against (the sweep file's)


@dataclass(frozen=True)
class Point:
    point_id: str
    preset: str
    mode: str
    hw: tuple[tuple[str, Any], ...]
    workload: WorkloadSpec
    workload_key: str
    tokens: int
    seed: int
    masks_path: str | None


def _hardware_fields(preset: str) -> dict[str, Any] | None:
    """Field name -> the preset's value (to type-check grid values); None when the simulator is unavailable."""
    try:
        from simulator.hardware import load_hardware
    except ImportError:
        return None
    hw = load_hardware(preset, None)
    return {f.name: getattr(hw, f.name) for f in dataclasses.fields(hw)}


def _known_presets() -> list[str] | None:
    try:
        from simulator import hardware
    except ImportError:
        return None
    for name in ("list_presets", "presets", "preset_names"):
        fn = getattr(hardware, name, None)
        if callable(fn):
            try:
                return sorted(fn())
            except Exception:
                return None
    return None


def parse_sweep(obj: dict[str, Any], source: str = "sweep", base: Path | None = None) -> SweepSpec:
    """Validate a parsed sweep TOML (see the module docstring); errors name the key."""
    unknown = set(obj) - {"sweep", "grid", "workload"}
    if unknown:
        raise UserError(f"{source}: unknown key {sorted(unknown)[0]!r} (known: sweep, grid, workload)")
    settings = build(SweepSettings, obj.get("sweep", {}), f"{source}: [sweep]")
    if any(t < 1 for t in settings.tokens):
        raise UserError(f"{source}: [sweep].tokens: token counts must be >= 1")
    presets = _known_presets()
    if presets is not None and settings.preset not in presets and not Path(settings.preset).is_file():
        raise UserError(f"{source}: [sweep].preset: unknown preset {settings.preset!r} (known: {', '.join(presets)})")
    grid_tbl = obj.get("grid", {})
    if not isinstance(grid_tbl, dict):
        raise UserError(f"{source}: [grid]: expected a table of hardware field = [values]")
    try:
        fields = _hardware_fields(settings.preset)
    except UserError as exc:
        raise UserError(f"{source}: [sweep].preset: {exc}") from None
    grid = []
    for key, values in grid_tbl.items():
        where = f"{source}: [grid].{key}"
        if fields is not None and key not in fields:
            raise UserError(f"{where}: unknown hardware field (known: {', '.join(sorted(fields))})")
        if not isinstance(values, list):
            raise UserError(f"{where}: expected a list of values, got {type(values).__name__} {values!r}")
        if not values:
            raise UserError(f"{where}: empty list (the grid would be empty)")
        if fields is not None:
            default = fields[key]
            tp = type(default) if isinstance(default, (bool, int, float, str)) else Any
            values = [check_value(v, tp, f"{where}[{i}]") for i, v in enumerate(values)]
        grid.append((key, tuple(values)))
    wls = obj.get("workload")
    if wls is None:
        raise UserError(f"{source}: [[workload]]: missing (give at least one workload: masks = ... or synthetic = ...)")
    if not isinstance(wls, list) or not wls:
        raise UserError(f"{source}: [[workload]]: expected one or more [[workload]] tables")
    workloads = []
    for i, tbl in enumerate(wls):
        wl = build(WorkloadSpec, tbl, f"{source}: [[workload]][{i}]")
        if (wl.masks is None) == (wl.synthetic is None):
            raise UserError(f"{source}: [[workload]][{i}]: give exactly one of masks = ... or synthetic = ...")
        if wl.synthetic is not None:
            try:
                from simulator.workload import synthetic

                synthetic(wl.synthetic, 0)  # parses the spec; masks are generated lazily, so this is cheap
            except ImportError:
                pass
            except UserError as exc:
                raise UserError(f"{source}: [[workload]][{i}].synthetic: {exc}") from None
        workloads.append(wl)
    names = [w.name for w in workloads]
    if len(set(names)) != len(names):
        raise UserError(f"{source}: [[workload]].name: duplicate workload name {[n for n in names if names.count(n) > 1][0]!r}")
    return SweepSpec(settings=settings, grid=tuple(grid), workloads=tuple(workloads), base=base)


def load_sweep(path: str | Path) -> SweepSpec:
    path = Path(path)
    return parse_sweep(read_toml(path), source=str(path), base=path.parent.resolve())


def _digest(obj: Any, n: int = 16) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def expand(spec: SweepSpec) -> list[Point]:
    """All points of the grid, in a stable order: workload-major (each worker reuses its workload),
    token counts innermost (the points of one machine are simulated together)."""
    keys = [k for k, _ in spec.grid]
    combos = list(itertools.product(*[v for _, v in spec.grid])) if spec.grid else [()]
    points = []
    for wl in spec.workloads:
        ident = wl.identity(spec.base)
        wkey = _digest(ident, 12)
        for combo in combos:
            for tokens in spec.settings.tokens:  # innermost: one simulate() call serves all token counts
                hw = tuple(zip(keys, combo))
                pid = _digest({"preset": spec.settings.preset, "mode": spec.settings.mode, "hw": sorted(hw), "workload": ident,
                               "tokens": tokens, "seed": spec.settings.seed})
                points.append(Point(pid, spec.settings.preset, spec.settings.mode, hw, wl, wkey, int(tokens), spec.settings.seed,
                                    str(wl.resolved_masks(spec.base)) if wl.masks else None))
    return points


# ---------------------------------------------------------------- worker side
_WORKLOADS: dict[str, Any] = {}  # per worker process: workload key -> simulator workload (built once)


def _memoized(layer):
    """The same layer, its packed mask generated once and kept (a synthetic workload regenerates
    its masks on every ``load()``; a sweep loads each one once per point)."""
    cache: list = []

    def loader():
        if not cache:
            cache.append(layer.loader())
        return cache[0]

    return dataclasses.replace(layer, loader=loader)


def _build_workload(p: Point):
    from simulator import workload as simwl

    if p.workload_key not in _WORKLOADS:
        # Bound worker memory: a LLaMA-7B mask set is ~0.8 GB packed, so keep one workload at a time.
        _WORKLOADS.clear()
        if p.masks_path:
            layers = simwl.from_masks(p.masks_path)
        else:
            layers = [_memoized(l) for l in simwl.synthetic(p.workload.synthetic, p.seed)]
        _WORKLOADS[p.workload_key] = layers
    return _WORKLOADS[p.workload_key]


def point_row(p: Point) -> dict[str, Any]:
    """The parameter columns of a point (also written for failed points)."""
    row = {"point_id": p.point_id, "preset": p.preset, "mode": p.mode, "workload": p.workload.name, "tokens": p.tokens, "seed": p.seed}
    row.update(dict(p.hw))
    return row


def totals(layers: pd.DataFrame, summary: dict[str, Any] | None = None) -> dict[str, Any]:
    """Whole-workload totals of a simulated layers table (one sweep row)."""
    out: dict[str, Any] = {"layers": int(len(layers))}
    for c in _SUM_COLUMNS:
        if c in layers.columns and layers[c].notna().any():
            out[c] = float(layers[c].sum())
    if out.get("cycles"):
        if "dense_cycles" in out:
            out["speedup"] = out["dense_cycles"] / out["cycles"]
        if "nm_cycles" in out:
            out["speedup_vs_nm"] = out["nm_cycles"] / out["cycles"]
    if "bound" in layers.columns and len(layers):
        out["memory_bound_share"] = float((layers["bound"] == "memory").mean())
    if "utilization" in layers.columns and "cycles" in layers.columns and out.get("cycles"):
        out["utilization"] = float((layers["utilization"] * layers["cycles"]).sum() / out["cycles"])
    return out


def run_group(points: list[Point]) -> list[dict[str, Any]]:
    """Simulate points that differ only in ``tokens`` with ONE simulator call (the mask statistics
    and the machine are shared; only the token count changes); never raises — an error becomes
    every point's ``status``/``error``."""
    t0 = time.perf_counter()
    p0 = points[0]
    rows = [point_row(p) for p in points]
    try:
        from simulator import hardware, run as simrun

        hw = hardware.load_hardware(p0.preset, dict(p0.hw) or None)
        wl = _build_workload(p0)
        layers = simrun.simulate(wl, hw, p0.mode, sorted({p.tokens for p in points}))
        for row, p in zip(rows, points):
            row.update(totals(layers[layers["tokens"] == p.tokens]))
            row["status"], row["error"] = "ok", ""
    except Exception as exc:  # recorded, never fatal: one bad point must not kill the sweep
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        for row in rows:
            row["status"], row["error"] = "error", f"{type(exc).__name__}: {msg}"[:500]
    wall = round((time.perf_counter() - t0) / len(points), 4)
    for row in rows:
        row["wall_s"] = wall  # seconds per point (the group's time shared out)
        row["finished_at"] = time.time()
    return rows


def run_point(p: Point) -> dict[str, Any]:
    """Simulate one point (see :func:`run_group`)."""
    return run_group([p])[0]


def run_points(points: list[Point]) -> list[dict[str, Any]]:
    """Run a batch of points in one task (amortises Dask's per-task overhead), grouping the token
    counts of each machine into one simulator call."""
    groups: dict[tuple, list[Point]] = {}
    for p in points:
        groups.setdefault((p.workload_key, p.preset, p.mode, p.hw, p.seed), []).append(p)
    return [row for g in groups.values() for row in run_group(g)]


# ---------------------------------------------------------------- results store
def read_parquet_once(path: Path) -> pd.DataFrame:
    """Read a Parquet file through ONE open() (pyarrow may reopen a path, and a concurrent atomic
    replace would then mix the old and the new file)."""
    import io

    return pd.read_parquet(io.BytesIO(Path(path).read_bytes()))


class ResultStore:
    """``OUT/results.parquet`` (+ ``results.csv`` mirror): the tidy results, rewritten atomically."""

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.parquet = self.out / "results.parquet"
        self.csv = self.out / "results.csv"
        self.rows: list[dict[str, Any]] = []
        # A writer killed mid-write leaves its temp file (the real file is intact): clear them.
        for stale in self.out.glob(".results.*.tmp"):
            stale.unlink(missing_ok=True)
        self.frame = self._read()
        self.dirty = False

    def _read(self) -> pd.DataFrame:
        if self.parquet.is_file():
            try:
                return read_parquet_once(self.parquet)
            except Exception as exc:
                raise UserError(f"{self.parquet} is unreadable ({type(exc).__name__}); move it away to start the sweep afresh") from None
        if self.csv.is_file():
            return pd.read_csv(self.csv, keep_default_na=False, na_values=[""])
        return pd.DataFrame()

    def finished_ids(self) -> set[str]:
        if self.frame.empty or "point_id" not in self.frame.columns:
            return set()
        ok = self.frame[self.frame["status"] == "ok"] if "status" in self.frame.columns else self.frame
        return set(ok["point_id"].astype(str))

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        self.rows.extend(rows)
        self.dirty = True

    def table(self) -> pd.DataFrame:
        new = pd.DataFrame(self.rows)
        if self.frame.empty:
            df = new
        elif new.empty:
            df = self.frame
        else:
            # a retried point replaces its earlier (failed) row
            df = pd.concat([self.frame[~self.frame["point_id"].isin(set(new["point_id"]))], new], ignore_index=True)
        return df

    def flush(self) -> pd.DataFrame:
        df = self.table()
        if self.dirty:
            import io

            buf = io.BytesIO()
            df.to_parquet(buf, index=False)
            atomic_write_bytes(self.parquet, buf.getvalue())
            atomic_write_text(self.csv, df.to_csv(index=False))
            self.dirty = False
        return df


# ---------------------------------------------------------------- driver
@dataclass
class SweepOutcome:
    results: pd.DataFrame
    total: int
    skipped: int
    computed: int
    failed: int
    wall_s: float


def _make_client(scheduler: str | None, workers: int | None, processes: bool):
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout="20s"), None
        except Exception as exc:
            raise UserError(f"cannot reach the Dask scheduler at {scheduler}: {type(exc).__name__}: {exc}") from None
    n = workers or os.cpu_count() or 1
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=processes, dashboard_address=None, silence_logs=40)
    return Client(cluster), cluster


def _chunks(points: list[Point], n_chunks: int) -> list[list[Point]]:
    """Split workload-major points into about ``n_chunks`` contiguous chunks, never separating the
    token counts of one machine (they share one simulator call)."""
    machines: list[list[Point]] = []
    for p in points:
        key = (p.workload_key, p.hw)
        if machines and (machines[-1][0].workload_key, machines[-1][0].hw) == key:
            machines[-1].append(p)
        else:
            machines.append([p])
    size = max(1, -(-len(machines) // max(1, n_chunks)))
    return [[p for m in machines[i : i + size] for p in m] for i in range(0, len(machines), size)]


def run_sweep(spec: SweepSpec, out: str | Path, scheduler: str | None = None, workers: int | None = None,
              processes: bool = True, progress: bool = True, flush_every_s: float = 3.0,
              on_row: Callable[[dict[str, Any]], None] | None = None) -> SweepOutcome:
    """Run every point of ``spec`` not already finished in ``out``; return the full results table.

    ``workers = 0`` runs serially in this process (no Dask; for debugging and small in-process
    grids); otherwise a LocalCluster of ``workers`` single-threaded workers (default: one per CPU)
    or the existing cluster at ``scheduler``.
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    store = ResultStore(out)
    points = expand(spec)
    done = store.finished_ids()
    todo = [p for p in points if p.point_id not in done]
    skipped = len(points) - len(todo)
    failed = 0
    last = time.monotonic()
    bar = tqdm(total=len(points), initial=skipped, desc="sweep points", unit="pt", disable=not progress, dynamic_ncols=True)

    def record(rows: list[dict[str, Any]]) -> None:
        nonlocal failed, last
        store.add(rows)
        failed += sum(r["status"] != "ok" for r in rows)
        bar.update(len(rows))
        for r in rows:
            if on_row:
                on_row(r)
        if time.monotonic() - last >= flush_every_s:
            store.flush()
            last = time.monotonic()

    try:
        if todo and workers == 0:
            for chunk in _chunks(todo, len(todo)):  # one machine (all its token counts) at a time
                record(run_points(chunk))
        elif todo:
            from distributed import as_completed

            client, cluster = _make_client(scheduler, workers, processes)
            try:
                n_workers = max(1, len(client.scheduler_info().get("workers", {})) or (workers or 1))
                # Many small tasks (up to one per machine): a fine progress bar, frequent flushes and
                # good load balance; Dask's ~1 ms per task is nothing next to a simulation.
                chunks = _chunks(todo, max(n_workers * 8, 256))
                futures = {client.submit(run_points, c, pure=False): c for c in chunks}
                for fut in as_completed(futures):
                    try:
                        rows = fut.result()
                    except Exception as exc:  # the worker died or the task could not run: record, go on
                        msg = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:500]
                        rows = [{**point_row(p), "status": "error", "error": msg, "wall_s": None, "finished_at": time.time()} for p in futures[fut]]
                    record(rows)
            finally:
                client.close()
                if cluster is not None:
                    cluster.close()
    finally:
        bar.close()
        results = store.flush()
    return SweepOutcome(results=results, total=len(points), skipped=skipped, computed=len(todo), failed=failed,
                        wall_s=time.perf_counter() - t0)
