"""``besa run [EXPERIMENT.toml] --out DIR``: the whole job — prune -> eval -> simulate -> report.

With no file it runs the shipped default experiment (``configs/experiments/default.toml``).  The
file is parsed and validated by :mod:`besa.experiment.spec`; the steps are planned by
:mod:`besa.experiment.plan` and run (each in a child process, resumable) by
:mod:`besa.experiment.runner`.
"""

from __future__ import annotations

import signal
from pathlib import Path

from besa.experiment.runner import run_experiment
from besa.experiment.spec import load_experiment
from besa_common.extras import require
from besa_common.resources import config_file

HELP = "run a whole experiment (prune -> eval -> simulate -> report)"
DEFAULT_EXPERIMENT = config_file("experiments", "default")  # shipped as package data (besa_configs)


def add_arguments(parser) -> None:
    parser.add_argument(
        "experiment", nargs="?", default=None, metavar="EXPERIMENT.toml", help="experiment file (default: the shipped experiments/default.toml)"
    )
    parser.add_argument("--out", required=True, help="output folder: one sub-folder per run, report.html at the top")
    parser.add_argument("--dry-run", action="store_true", help="validate the file and print the steps without running them")
    parser.add_argument("--no-report", action="store_true", help="skip the final report")
    parser.add_argument("--wait", action="store_true", help="if another writer holds --out, wait for it instead of failing at once")


def run(args) -> int:
    path = Path(args.experiment) if args.experiment else DEFAULT_EXPERIMENT
    exp = load_experiment(path)
    if not args.dry_run:  # validating and listing the steps needs no torch; running them does
        require("run", "prune")
        if exp.whatif is not None and exp.whatif.workers != 0:
            require("run ([whatif] on Dask; workers = 0 runs it serially)", "sweep")

    def on_term(signum, frame):  # SIGTERM unwinds like Ctrl-C (children die with us: PDEATHSIG)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    return run_experiment(exp, Path(args.out), dry_run=args.dry_run, report=not args.no_report, experiment_text=path.read_text(), wait=args.wait)
