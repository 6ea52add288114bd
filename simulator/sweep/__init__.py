"""What-if sweeps: a grid of hardware variants × workloads × token counts, run on Dask distributed.

A sweep file (TOML, see ``configs/sweeps/``)::

    [sweep]
    preset = "vitcod"            # base hardware preset; [grid] values override its fields
    mode = "cycle"               # simulation mode
    tokens = [1, 2048]           # N, tokens in flight
    seed = 0                     # seed of synthetic workloads

    [grid]                       # hardware field -> list of values; the cartesian product is swept
    lines = [16, 32, 64, 128]
    dram_bytes_per_cycle = [82.5, 164.93]

    [[workload]]                 # one or more; masks = a masks file, or synthetic = a simulator spec
    name = "llama7b-50"
    synthetic = "llama-7b:sparsity=0.5"

Every point (preset, mode, hardware overrides, workload, tokens, seed) has a STABLE id (a hash of
those values), so a rerun skips the points already finished in ``OUT/results.sqlite`` and only
computes the rest; a point that raises is recorded with ``status = "error"`` and its one-line
error and does not stop the sweep (failed points are retried on the next run).

One job per module:

* :mod:`~simulator.sweep.spec` — parsing and validation (everything checkable is checked first);
* :mod:`~simulator.sweep.points` — grid expansion, point ids, batches;
* :mod:`~simulator.sweep.workloads` — masks materialised once per sweep and shared by the workers;
* :mod:`~simulator.sweep.worker` — points -> result rows (one simulator call per machine; on Dask
  one per machine and layer slice, each worker keeping its layers' mask statistics);
* :mod:`~simulator.sweep.execute` — :func:`run_sweep`: lock, Dask, commits, exports;
* :mod:`~simulator.sweep.store` — the SQLite results database and its Parquet/CSV exports.

Nothing here imports Dask until a sweep runs on it.
"""

from simulator.schema import RESULT_FIELDS
from simulator.sweep.execute import SweepOutcome, check_workers, run_sweep
from simulator.sweep.points import Point, chunks, expand, machines, point_id
from simulator.sweep.spec import SweepSettings, SweepSpec, WorkloadSpec, check_grid, check_settings, load_sweep, parse_sweep
from simulator.sweep.store import DB_NAME, ResultStore, export_results, is_sweep_dir, read_db, read_export, read_results
from simulator.sweep.worker import point_row, run_group, run_points, totals

__all__ = [
    "DB_NAME",
    "RESULT_FIELDS",
    "Point",
    "ResultStore",
    "SweepOutcome",
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
    "point_row",
    "read_db",
    "read_export",
    "read_results",
    "run_group",
    "run_points",
    "run_sweep",
    "totals",
]
