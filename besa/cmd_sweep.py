"""``besa sweep SWEEP.toml --out DIR``: a what-if hardware grid on Dask distributed.

See :mod:`simulator.sweep` for the file format and the guarantees (stable point ids, skip on
rerun, failed points recorded, atomic result files).  Writes DIR/results.parquet,
DIR/results.csv and, unless ``--no-report``, DIR/report.html with the sweep heatmaps.
"""

from __future__ import annotations

import time

HELP = "what-if hardware sweep on Dask"


def add_arguments(parser) -> None:
    parser.add_argument("sweep", metavar="SWEEP.toml", help="sweep file (see configs/sweeps/)")
    parser.add_argument("--out", required=True, help="output folder (results.parquet, results.csv, report.html)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS", help="address of an existing Dask scheduler (default: start a LocalCluster)")
    parser.add_argument("--workers", type=int, default=None, help="LocalCluster workers (default: one per CPU core; 0 = run serially in this process)")
    parser.add_argument("--no-report", action="store_true", help="do not render DIR/report.html")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--flush-every", type=float, default=3.0, metavar="SECONDS",
                        help="rewrite the result files (atomically) at most this often; a kill loses at most this much work (default 3)")


def _terminate_as_interrupt() -> None:
    """SIGTERM (kill, a scheduler's stop) unwinds like Ctrl-C: the finished points are flushed and
    the cluster shut down instead of the process vanishing mid-way."""
    import signal

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def run(args) -> int:
    from simulator.sweep import load_sweep, run_sweep
    from besa_common.errors import UserError

    if args.workers is not None and args.workers < 0:
        raise UserError("--workers must be >= 0")
    if args.workers != 0:  # --workers 0 runs the points serially in this process: no Dask needed
        from besa_common.extras import require

        require("sweep", "sweep")
    spec = load_sweep(args.sweep)
    from besa_common.fileio import check_output_path

    check_output_path(args.out)  # not a file, not under one, writable: before any point runs
    _terminate_as_interrupt()
    t0 = time.perf_counter()
    res = run_sweep(spec, args.out, scheduler=args.scheduler, workers=args.workers, progress=not args.no_progress,
                    flush_every_s=args.flush_every)
    print(f"sweep: {res.total} points ({res.skipped} already done, {res.computed} computed, {res.failed} failed) "
          f"in {time.perf_counter() - t0:.1f} s -> {args.out}/results.parquet")
    if res.failed:
        errs = res.results.loc[res.results["status"] != "ok", "error"].astype(str)
        print(f"sweep: failed points are recorded with their error (e.g. {errs.iloc[0]}); rerun to retry them")
    if not args.no_report and res.total - res.failed > 0:
        from reports.html import render_report
        from reports.sweep_io import read_results
        from pathlib import Path

        page = render_report([], Path(args.out), sweep=read_results(Path(args.out)), title=f"besa sweep: {args.sweep}")
        print(f"report: {page}")
    return 0
