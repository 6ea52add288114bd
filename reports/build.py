"""The report of a set of directories: find the runs and sweeps under them, render the page.

:func:`build_report` is what ``besa report`` (:mod:`besa.commands.report`) and ``besa run`` call.
Each DIR is a run directory (``besa prune``/``eval``/``simulate`` outputs), a folder of them
(``besa run --out DIR``: one EXPERIMENT, named after the folder) or a sweep output.  Several
experiments stay apart: their runs are labelled ``experiment/run`` and a figure puts them side by
side.  Writes OUT/report.html, OUT/figures/*.svg (+ pdf/png with ``formats``), OUT/table.csv,
OUT/summary.csv and OUT/report.md (OUT defaults to the first DIR).  Never imports torch.
"""

from __future__ import annotations

from pathlib import Path

from besa_common.errors import UserError
from besa_common.fileio import check_output_path
from reports.html import check_formats, render_report
from reports.sweep_io import find_sweeps, load_sweeps
from reports.table import find_experiments, label_runs, load_run


def build_report(dirs: list[str | Path], out: str | Path | None = None, title: str = "besa report", notes=(), formats=("svg",)) -> Path:
    """Find runs and sweeps under ``dirs``, render, return the report.html path."""
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
    sweep_df = load_sweeps(sweeps) if sweeps else None
    return render_report(runs, Path(out) if out else dirs[0], sweep=sweep_df, title=title, notes=notes, formats=formats)
