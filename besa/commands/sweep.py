"""``besa sweep SWEEP.toml --out DIR``: a what-if hardware grid on Dask distributed.

See :mod:`simulator.sweep` for the file format and the guarantees (stable point ids, skip on
rerun, failed points recorded).  Writes DIR/results.sqlite (one row per finished point, committed
within a quarter second, readable while the sweep runs), the exports DIR/results.parquet and DIR/results.csv at the end and,
unless ``--no-report``, DIR/report.html with the sweep heatmaps.  ``besa sweep --export DIR`` only
rewrites the exports from the database (e.g. of a sweep still running or killed).

Exit status: 0 every point ok; 1 some points failed (one line with the count); 2 bad input
(including DIR held by another writer, unless ``--wait``).
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from besa_common.errors import UserError
from besa_common.extras import require
from besa_common.fileio import check_output_path
from reports.html import render_report
from reports.sweep_io import read_results
from simulator.sweep import DB_NAME, check_workers, export_results, load_sweep, plan_sweep, run_sweep
from simulator.sweep.store import DB_TIMEOUT_S

HELP = "what-if hardware sweep on Dask"


def add_arguments(parser) -> None:
    parser.add_argument("sweep", nargs="?", default=None, metavar="SWEEP.toml", help="sweep file (see configs/sweeps/)")
    parser.add_argument("--out", default=None, metavar="DIR", help="output folder (results.sqlite; exports results.parquet, results.csv; report.html)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS", help="address of an existing Dask scheduler (default: start a LocalCluster)")
    parser.add_argument("--workers", type=int, default=None, help="LocalCluster workers (default: one per CPU core; 0 = run serially in this process)")
    parser.add_argument("--wait", action="store_true", help="if another writer holds DIR, wait for it instead of failing at once")
    parser.add_argument(
        "--export", default=None, metavar="DIR", help="do not run: write DIR/results.parquet and DIR/results.csv from DIR/results.sqlite and exit"
    )
    parser.add_argument("--dry-run", action="store_true", help="do not run: say how many points the grid has, how many DIR already holds and how many are new")
    parser.add_argument(
        "--db-timeout",
        type=float,
        default=DB_TIMEOUT_S,
        metavar="SECONDS",
        help=f"wait this long for another process's lock on DIR/results.sqlite before giving up with one line (default {DB_TIMEOUT_S:g})",
    )
    parser.add_argument("--no-report", action="store_true", help="do not render DIR/report.html")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _terminate_as_interrupt() -> None:
    """SIGTERM (kill, a scheduler's stop) unwinds like Ctrl-C: the cluster is shut down instead of
    the process vanishing mid-way (finished points are already committed)."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _export(args) -> int:
    if args.sweep is not None or args.out is not None:
        raise UserError("--export DIR takes no sweep file and no --out (it only rewrites DIR's exports)")
    d = Path(args.export)
    if not (d / DB_NAME).is_file():
        raise UserError(f"--export {d}: no {DB_NAME} there (not a sweep output folder)")
    pq, csv = export_results(d)
    print(f"sweep: exported {pq} and {csv}")
    return 0


def run(args) -> int:
    if args.export is not None:
        return _export(args)
    if args.sweep is None or args.out is None:
        raise UserError("give a sweep file and --out DIR (or --export DIR)")
    check_workers(args.workers, "--workers")
    if not 0 <= args.db_timeout <= 86400:  # NaN fails too
        raise UserError(f"--db-timeout must be a number of seconds in [0, 86400], got {args.db_timeout}")
    if args.workers != 0 and not args.dry_run:  # --workers 0 runs the points serially in this process: no Dask needed
        require("sweep", "sweep")
    spec = load_sweep(args.sweep)  # the whole file is validated before anything runs
    check_output_path(args.out)  # not a file, not under one, writable: before any point runs
    if args.dry_run:
        plan = plan_sweep(spec, args.out)
        print(
            f"sweep: {plan.total} points, {plan.done} already done in {args.out}, {plan.new} new "
            f"({plan.machines} machine(s), {plan.workloads} workload(s) to simulate); nothing run"
        )
        return 0
    _terminate_as_interrupt()
    t0 = time.perf_counter()
    res = run_sweep(spec, args.out, scheduler=args.scheduler, workers=args.workers, progress=not args.no_progress, wait=args.wait, db_timeout=args.db_timeout)
    print(
        f"sweep: {res.total} points ({res.skipped} already done, {res.computed} computed, {res.failed} failed) "
        f"in {time.perf_counter() - t0:.1f} s -> {Path(args.out) / 'results.sqlite'}"
    )
    if not args.no_report and res.total - res.failed > 0:
        page = render_report([], Path(args.out), sweep=read_results(Path(args.out)), title=f"besa sweep: {args.sweep}")
        print(f"report: {page}")
    if res.failed:
        errs = res.results.loc[res.results["status"] != "ok", "error"].astype(str)
        print(
            f"besa sweep: {res.failed} of {res.computed} points failed (e.g. {errs.iloc[0]}); they are recorded with their error, rerun to retry them",
            file=sys.stderr,
        )
        return 1
    return 0
