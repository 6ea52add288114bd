"""What-if sweeps: a grid of hardware variants × workloads × token counts, run on Dask distributed.

A sweep file (TOML, see ``configs/sweeps/``)::

    [sweep]
    preset = "vitcod"            # base hardware preset (a name, or a .toml relative to this file)
    mode = ["dense", "nm", "cycle"]  # one mode or a list (rows are tagged with theirs)
    tokens = [1, 2048]           # N, tokens in flight
    context = [0, 4096]          # optional: also the decoder step (attention over this many cached
                                 # positions, 0 = a fresh prompt; KV cache, LM head, embeddings)
    batch = [1]                  # with context: sequences the tokens in flight come from
    seed = 0                     # seed of synthetic workloads

    [grid]                       # hardware field -> list of values; the cartesian product is swept
    lines = [16, 32, 64, 128]
    dram_bytes_per_cycle = [82.5, 164.93]

    [[workload]]                 # one or more; masks = a masks file, or synthetic = a simulator spec
    name = "llama7b-50"          # (paths relative to this file); model = the decoder step's model
    synthetic = "llama-7b:sparsity=0.5"

Every list in ``[sweep]`` and ``[grid]`` is an axis: the points are their cartesian product.  Every
point's id is the digest of what decides its result (:mod:`simulator.sweep.identity`: the RESOLVED
machine, the workload's contents, mode, tokens, context, batch, simulator version), so a rerun
skips the points already finished in ``OUT/results.sqlite`` and computes exactly the rest — an
edited preset file, masks file or ``like=`` source gives new points, never stale rows; a point that raises is recorded with ``status = "error"`` and its one-line
error and does not stop the sweep (failed points are retried on the next run).

One job per module:

* :mod:`~simulator.sweep.spec` — parsing and validation (everything checkable is checked first);
* :mod:`~simulator.sweep.identity` — digests of machines, workload contents and points;
* :mod:`~simulator.sweep.points` — grid expansion (machines resolved once), batches;
* :mod:`~simulator.sweep.results` — a point's result columns (totals, per token, decoder step);
* :mod:`~simulator.sweep.workloads` — masks materialised once per sweep and shared by the workers;
* :mod:`~simulator.sweep.worker` — points -> result rows (one simulator call per machine; on Dask
  one per machine and layer slice, each worker keeping its layers' mask statistics);
* :mod:`~simulator.sweep.execute` — :func:`run_sweep`: lock, Dask, commits, exports;
* :mod:`~simulator.sweep.store` — the SQLite results database and its Parquet/CSV exports.

Nothing here imports Dask until a sweep runs on it.
"""

from simulator.schema import RESULT_FIELDS
from simulator.sweep.execute import SweepOutcome, SweepPlan, check_workers, plan_sweep, run_sweep
from simulator.sweep.points import Point, chunks, expand, machines, point_id
from simulator.sweep.spec import SweepSettings, SweepSpec, WorkloadSpec, check_grid, check_settings, load_sweep, parse_sweep
from simulator.sweep.store import DB_NAME, ResultStore, export_results, is_sweep_dir, read_db, read_export, read_machines, read_results
from simulator.sweep.worker import point_row, run_group, run_points, totals

__all__ = [
    "DB_NAME",
    "RESULT_FIELDS",
    "Point",
    "ResultStore",
    "SweepOutcome",
    "SweepPlan",
    "SweepSettings",
    "SweepSpec",
    "WorkloadSpec",
    "check_grid",
    "check_settings",
    "check_workers",
    "chunks",
    "expand",
    "export_results",
    "is_sweep_dir",
    "load_sweep",
    "machines",
    "parse_sweep",
    "point_id",
    "plan_sweep",
    "point_row",
    "read_db",
    "read_export",
    "read_machines",
    "read_results",
    "run_group",
    "run_points",
    "run_sweep",
    "totals",
]
