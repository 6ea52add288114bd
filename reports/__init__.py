"""Reports: the last stage of the dataflow.  Reads run directories and sweep results only and
never imports torch.

* :mod:`reports.table` — run directories -> one tidy pandas table (+ summary / glance tables);
* :mod:`reports.siblings` — unstructured runs vs their equal-sparsity n:m siblings;
* :mod:`reports.pplci`, :mod:`reports.zeroshot` — paired perplexity / HellaSwag comparisons between runs;
* :mod:`reports.sensitivity` — which guessed preset fields decide a simulation (``--sensitivity``);
* :mod:`reports.writers` — table.csv, summary.csv, siblings.csv, report.md;
* :mod:`reports.figures` — one function per plot and the :data:`~reports.figures.FIGURES` registry;
* :mod:`reports.plotkit`, :mod:`reports.fmt` — figure plumbing, readable numbers;
* :mod:`reports.html` — the self-contained ``report.html`` (figures embedded);
* :mod:`reports.sweep_io` — finding and reading sweep outputs (:mod:`simulator.sweep` runs them);
* :mod:`reports.build` — :func:`~reports.build.build_report`: directories -> the page
  (``besa report`` = :mod:`besa.commands.report`).
"""
