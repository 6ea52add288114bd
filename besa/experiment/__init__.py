"""``besa run``'s experiments, one job per module:

* :mod:`~besa.experiment.spec` — the experiment TOML: parsing, validation, the runs it expands to
  and the equal-sparsity sibling pairing (no torch; validates a whole file in a second);
* :mod:`~besa.experiment.plan` — the command line of every step, the simulations of each run, the
  ``sibling.json`` records, and the check of every command line by the commands' real parsers;
* :mod:`~besa.experiment.runner` — running (or resuming) the steps in child processes, the
  optional what-if sweep and the final report.

The command line itself is :mod:`besa.commands.run`.
"""
