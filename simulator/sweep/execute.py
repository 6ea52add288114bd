"""Running a sweep: the points not yet finished, on Dask (or serially), into the results database.

:func:`run_sweep` holds the output folder's writer lock for the whole sweep (a second writer fails
at once naming this one, or waits with ``wait=True``), materialises each workload once
(:mod:`simulator.sweep.workloads`), hands batches of points to the workers (one task per layer
slice on Dask, see :func:`_run_on_dask`) and commits finished rows in one transaction at most a
quarter second after they arrive, and before it waits for a worker (:mod:`simulator.sweep.store`).
At the end it writes the ``results.parquet`` / ``results.csv`` exports.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd

import simulator.sweep.workloads as shared_wl
from besa_common.errors import UserError
from besa_common.fileio import check_output_path, dir_lock, make_dirs
from simulator.sweep.points import Point, chunks, expand
from simulator.sweep.spec import SweepSpec
from simulator.sweep.store import DB_TIMEOUT_S, ResultStore, export_results, finished_ids
from simulator.sweep.worker import assemble, failed_rows, run_points, run_slice


@dataclass
class SweepOutcome:
    results: pd.DataFrame  # every row of the database (earlier runs' included)
    total: int  # points in the grid
    skipped: int  # already finished before this run
    computed: int  # simulated by this run
    failed: int  # of those, how many failed
    wall_s: float
    sim_s: float = 0.0  # Σ seconds the workers spent simulating (the rest of wall_s x workers is bookkeeping)
    prepare_s: float = 0.0  # seconds spent materialising shared workloads
    points_s: float = 0.0  # seconds from the first point handed out to the last row committed


@dataclass
class SweepPlan:
    """What a run of a sweep into a folder would do (``besa sweep --dry-run``)."""

    total: int  # points in the grid
    done: int  # already finished there (same id: same machine, workload contents, mode, N, context, batch)
    new: int  # to compute
    machines: int  # distinct resolved machines among the new points
    workloads: int  # distinct workload contents among the new points


def plan_sweep(spec: SweepSpec, out: str | os.PathLike) -> SweepPlan:
    """Count the points of ``spec`` that a run into ``out`` would compute; reads ``out`` only."""
    points = expand(spec)
    done = finished_ids(out) if Path(out).is_dir() else set()
    todo = [p for p in points if p.point_id not in done]
    return SweepPlan(len(points), len(points) - len(todo), len(todo), len({p.hw_id for p in todo}), len({p.workload_key for p in todo}))


def machine_table(points: list[Point]) -> dict[str, dict[str, Any]]:
    """``hw_id`` -> the resolved machine's fields, for the results store's ``machines`` table."""
    out: dict[str, dict[str, Any]] = {}
    for p in points:
        if p.hw_id not in out and p.hardware is not None:
            out[p.hw_id] = dict(vars(p.hardware))
    return out


def check_workers(workers: int | None, where: str = "workers") -> None:
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise UserError(f"{where} must be an integer >= 0 (0 = serially in this process), got {workers!r}")


def _make_client(scheduler: str | None, workers: int | None, processes: bool):
    from distributed import Client

    if scheduler:
        try:
            return Client(scheduler, timeout="20s"), None
        except Exception as exc:
            raise UserError(f"cannot reach the Dask scheduler at {scheduler}: {type(exc).__name__}: {exc}") from None
    n = workers or os.cpu_count() or 1
    return Client(cluster := local_cluster(n, processes)), cluster


def local_cluster(n_workers: int, processes: bool = True):
    """The LocalCluster of a sweep: ``n_workers`` single-threaded workers, and no work stealing —
    each layer slice stays with the worker that holds its statistics (see :func:`_run_on_dask`);
    a slice whose worker is gone still runs elsewhere (the restriction is loose)."""
    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.scheduler.work-stealing": False}):
        return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=processes, dashboard_address=None, silence_logs=40)


def _prepare_shared(cache: Path, todo: list[Point], client, n_workers: int) -> dict[str, str]:
    """Materialise each workload of ``todo`` once into ``cache``; return workload key -> index file."""
    shared: dict[str, str] = {}
    for p in todo:
        if p.workload_key not in shared:
            idx = shared_wl.materialize(cache, p.workload_key, p.workload.synthetic, p.masks_path, p.seed, client=client, parts=max(1, n_workers * 2))
            shared[p.workload_key] = str(idx)
    return shared


class _Recorder:
    """Commits rows as they arrive and keeps the counts (and the progress bar) up to date.

    Rows are committed in one transaction at most ``COMMIT_EVERY_S`` after the first of them
    arrived, and at once when the caller is about to wait (:meth:`flush`): a grid of millisecond
    points pays one commit per quarter second, not one per machine, and a kill loses at most that
    quarter second of finished rows (plus the points in flight).
    """

    COMMIT_EVERY_S = 0.25

    def __init__(self, store: ResultStore, bar, on_row: Callable[[dict[str, Any]], None] | None):
        self.store, self.bar, self.on_row = store, bar, on_row
        self.failed = 0
        self.sim_s = 0.0
        self._pending: list[dict[str, Any]] = []
        self._since = 0.0

    def __call__(self, rows: list[dict[str, Any]]) -> None:
        if not self._pending:
            self._since = time.perf_counter()
        self._pending.extend(rows)
        self.failed += sum(r["status"] != "ok" for r in rows)
        self.sim_s += sum(r["wall_s"] or 0.0 for r in rows)
        if time.perf_counter() - self._since >= self.COMMIT_EVERY_S:
            self.flush()

    def flush(self) -> None:
        """Commit the rows held (one transaction), then report them."""
        rows, self._pending = self._pending, []
        if not rows:
            return
        self.store.add(rows)
        self.bar.update(len(rows))
        if self.on_row:
            for r in rows:
                self.on_row(r)


def _run_on_dask(todo: list[Point], cache: Path, record: _Recorder, client) -> tuple[float, float]:
    """Returns (seconds materialising workloads, seconds running the points).

    Each batch of machines is one task per layer SLICE, and slice k always runs on worker k
    (:func:`simulator.sweep.worker.run_slice`): a worker computes the statistics of its own layers
    only, once for the whole sweep, and every machine's work is split evenly over the workers.  (The
    restriction is loose: when a worker is gone another one takes its tasks; our LocalCluster does
    not steal work, a cluster at ``--scheduler`` may, at the price of some statistics computed twice.)
    A batch's rows are committed when all of its slices are back (:func:`~simulator.sweep.worker.assemble`).
    """
    from distributed import as_completed

    addrs = sorted(client.scheduler_info().get("workers", {})) or [None]
    n_workers = len(addrs)
    t0 = time.perf_counter()
    shared = _prepare_shared(cache, todo, client, n_workers)
    t1 = time.perf_counter()
    [shared_f] = client.scatter([shared], broadcast=True)  # the small key -> path map, sent once
    # Many small tasks (about one machine each for a real grid): good load balance and a kill
    # loses little; batches of many trivial points keep Dask's ~1 ms per task negligible.
    batches = chunks(todo, max(n_workers * 8, 256))
    futures: dict = {}
    for bi, b in enumerate(batches):
        for k, addr in enumerate(addrs):
            where = {"workers": [addr], "allow_other_workers": True} if addr is not None and n_workers > 1 else {}
            futures[client.submit(run_slice, b, shared_f, k, n_workers, pure=False, **where)] = (bi, k)
    got: dict[int, list] = {bi: [None] * n_workers for bi in range(len(batches))}
    done = as_completed(futures)
    try:
        for fut in done:
            bi, k = futures[fut]
            if bi in got:  # else: the batch already failed
                try:
                    got[bi][k] = fut.result()
                except Exception as exc:  # the worker died or the task could not run: record, go on
                    del got[bi]
                    record(failed_rows(batches[bi], exc))
                else:
                    if all(x is not None for x in got[bi]):
                        record(assemble(batches[bi], got.pop(bi)))
            if not done.has_ready():
                record.flush()  # about to wait for a worker: commit what is here first
    finally:
        record.flush()
    return t1 - t0, time.perf_counter() - t1


def run_sweep(
    spec: SweepSpec,
    out: str | os.PathLike,
    scheduler: str | None = None,
    workers: int | None = None,
    processes: bool = True,
    progress: bool = True,
    wait: bool = False,
    export: bool = True,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    client=None,
    points: list[Point] | None = None,
    workload_dir: str | os.PathLike | None = None,
    db_timeout: float = DB_TIMEOUT_S,
) -> SweepOutcome:
    """Run every point of ``spec`` not already finished in ``out``; return the whole results table.

    ``workers = 0`` runs serially in this process (no Dask); otherwise a LocalCluster of
    ``workers`` single-threaded worker processes (default: one per CPU), the cluster at
    ``scheduler``, or the Dask ``client`` given.  Holds ``out``'s writer lock throughout (``wait``:
    wait for another holder instead of failing).  ``points``: a subset of ``expand(spec)`` to run
    (default all).  ``workload_dir``: where shared workloads are materialised and KEPT (default
    ``OUT/.workloads``, removed at the end).  ``db_timeout``: seconds to wait for another process's
    lock on the results database before one line (rows already committed are kept).
    """
    from tqdm.auto import tqdm

    check_workers(workers)
    out = check_output_path(out)
    cache = Path(workload_dir) if workload_dir is not None else shared_wl.cache_dir(out)
    t0 = time.perf_counter()
    with dir_lock(out, wait=wait) as lock:
        make_dirs(out)
        lock.clean_temps()
        store = ResultStore(out, timeout=db_timeout)
        try:
            points = expand(spec) if points is None else list(points)
            done = store.finished_ids()
            todo = [p for p in points if p.point_id not in done]
            store.add_machines(machine_table(todo))
            bar = tqdm(total=len(points), initial=len(points) - len(todo), desc="sweep points", unit="pt", disable=not progress, dynamic_ncols=True)
            record = _Recorder(store, bar, on_row)
            prepare_s = points_s = 0.0
            try:
                if todo and workers == 0 and client is None:
                    t1 = time.perf_counter()
                    try:
                        for batch in chunks(todo, len(todo)):  # one machine (all its token counts) at a time
                            record(run_points(batch))
                    finally:
                        record.flush()  # an interrupted serial run keeps the rows it finished
                    points_s = time.perf_counter() - t1
                elif todo:
                    own = client is None
                    if own:
                        client, cluster = _make_client(scheduler, workers, processes)
                    try:
                        prepare_s, points_s = _run_on_dask(todo, cache, record, client)
                    finally:
                        if own:
                            client.close()
                            if cluster is not None:
                                cluster.close()
            finally:
                bar.close()
            if workload_dir is None:
                shared_wl.remove_cache(out)
            if export:
                export_results(out)
            results = store.frame()
        finally:
            store.close()
    return SweepOutcome(
        results=results,
        total=len(points),
        skipped=len(points) - len(todo),
        computed=len(todo),
        failed=record.failed,
        wall_s=time.perf_counter() - t0,
        sim_s=record.sim_s,
        prepare_s=prepare_s,
        points_s=points_s,
    )
