"""Reports and what-if sweeps: the last stage of the dataflow.  Reads run directories only and
never imports torch.

* :mod:`reports.table` — run directories -> one tidy pandas table (+ CSV / Markdown);
* :mod:`reports.figures` — one function per plot, ``fn(df, ax) -> caption``;
* :mod:`reports.html` — the self-contained ``report.html`` (figures embedded);
* :mod:`simulator.sweep` — hardware × workload × tokens grids on Dask, resumable results;
* :mod:`besa.experiment` — ``besa run`` experiment files (validation, run list);
* :mod:`reports.cli` / :mod:`besa.cmd_sweep` — ``besa report`` / ``besa sweep``.
"""
