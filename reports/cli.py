"""``besa report DIR... [--out DIR]``: regenerate the tables and the HTML report from run directories.

Each DIR is a run directory (``besa prune``/``eval``/``simulate`` outputs), a folder of them
(``besa run --out DIR``: one EXPERIMENT, named after the folder) or a sweep output.  Several
experiments stay apart: their runs are labelled ``experiment/run`` and a figure puts them side by
side.  Writes OUT/report.html, OUT/figures/*.svg (+ pdf/png with ``--format``), OUT/table.csv,
OUT/summary.csv and OUT/report.md (OUT defaults to the first DIR).  Never imports torch.
"""

from __future__ import annotations

from pathlib import Path

HELP = "regenerate the tables and the HTML report from run directories"


def add_arguments(parser) -> None:
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="run directories, folders of runs (besa run --out), or sweep outputs")
    parser.add_argument("--out", default=None, help="where to write report.html, table.csv, summary.csv, report.md (default: the first DIR)")
    parser.add_argument("--title", default="besa report", help="page title")
    parser.add_argument("--format", default="", metavar="FMT[,FMT]", help="also write every figure as pdf and/or png in OUT/figures/ (SVG is always written)")


def _load_sweeps(sweeps: list[Path]):
    """All sweep results in one frame; column ``sweep`` names each (``experiment/whatif`` when
    several experiments each bring one, so their points never mix)."""
    import pandas as pd

    from reports.sweep_io import read_results
    from reports.table import _short_names

    names = _short_names([s.resolve() for s in sweeps])
    frames = []
    for s in sweeps:
        df = read_results(s)
        df["sweep"] = names[s.resolve()]
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def build_report(dirs: list[str | Path], out: str | Path | None = None, title: str = "besa report", notes=(), formats=("svg",)) -> Path:
    """Library entry point: find runs and sweeps under ``dirs``, render, return the report.html path."""
    from besa_common.errors import UserError
    from besa_common.fileio import check_output_path
    from reports.html import check_formats, render_report
    from reports.sweep_io import find_sweeps
    from reports.table import find_experiments, label_runs, load_run

    dirs = [Path(d) for d in dirs]
    for d in dirs:
        if not d.is_dir():
            raise UserError(f"not a directory: {d}")
    check_output_path(Path(out) if out else dirs[0])  # before reading anything
    check_formats(formats)
    sweeps = find_sweeps(dirs)
    found = find_experiments([d for d in dirs if d not in sweeps])
    if not found and not sweeps:
        raise UserError(f"nothing to report in {', '.join(map(str, dirs))}: no run directories (manifest.json, eval.json, sim/) and no sweep results")
    runs = label_runs([load_run(p, exp) for exp, p in found])
    sweep_df = _load_sweeps(sweeps) if sweeps else None
    return render_report(runs, Path(out) if out else dirs[0], sweep=sweep_df, title=title, notes=notes, formats=formats)


def run(args) -> int:
    path = build_report(args.dirs, args.out, args.title, formats=[f for f in args.format.split(",") if f.strip()])
    print(f"report: {path}")
    return 0
