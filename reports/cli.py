"""``besa report DIR... [--out DIR]``: regenerate the tables and the HTML report from run directories.

Each DIR is a run directory (``besa prune``/``eval``/``simulate`` outputs), a folder of them
(``besa run --out DIR``) or a sweep output (``results.parquet``).  Writes OUT/report.html,
OUT/table.csv, OUT/summary.csv and OUT/report.md (OUT defaults to the first DIR).  Never imports torch.
"""

from __future__ import annotations

from pathlib import Path

HELP = "regenerate the tables and the HTML report from run directories"


def add_arguments(parser) -> None:
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="run directories, folders of runs (besa run --out), or sweep outputs")
    parser.add_argument("--out", default=None, help="where to write report.html, table.csv, summary.csv, report.md (default: the first DIR)")
    parser.add_argument("--title", default="besa report", help="page title")


def build_report(dirs: list[str | Path], out: str | Path | None = None, title: str = "besa report", notes=()) -> Path:
    """Library entry point: find runs and sweeps under ``dirs``, render, return the report.html path."""
    from reports.html import render_report
    from reports.sweep_io import find_sweeps, load_sweep_results
    from reports.table import find_runs, load_run
    from besa_common.errors import UserError

    from besa_common.fileio import check_output_path

    dirs = [Path(d) for d in dirs]
    for d in dirs:
        if not d.is_dir():
            raise UserError(f"not a directory: {d}")
    check_output_path(Path(out) if out else dirs[0])  # before reading anything
    sweeps = find_sweeps(dirs)
    run_dirs = find_runs([d for d in dirs if d not in sweeps])
    if not run_dirs and not sweeps:
        raise UserError(f"nothing to report in {', '.join(map(str, dirs))}: no run directories (manifest.json, eval.json, sim/) and no sweep results")
    runs = [load_run(p) for p in run_dirs]
    sweep_df = load_sweep_results(sweeps) if sweeps else None
    return render_report(runs, Path(out) if out else dirs[0], sweep=sweep_df, title=title, notes=notes)


def run(args) -> int:
    path = build_report(args.dirs, args.out, args.title)
    print(f"report: {path}")
    return 0
