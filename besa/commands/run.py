"""``besa run [EXPERIMENT.toml] --out DIR``: the whole job — prune -> eval -> simulate -> report.

With no file it runs the shipped default experiment (``configs/experiments/default.toml``).  The
file is parsed and validated by :mod:`besa.experiment.spec`; the steps are planned by
:mod:`besa.experiment.plan` and run (each in a child process, resumable) by
:mod:`besa.experiment.runner`: on a Dask cluster (:mod:`besa.experiment.dask_runner`; a local one
by default, ``--scheduler ADDRESS`` for an existing one) or, with ``--workers 0``, one after
another in this process.
"""

from __future__ import annotations

import signal
from pathlib import Path

from besa.experiment.cluster import security
from besa.experiment.dask_runner import DaskOptions
from besa.experiment.runner import run_experiment
from besa.experiment.spec import load_experiment
from simulator.sweep import check_workers
from besa_common.errors import UserError
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
    dask = parser.add_argument_group("Dask (independent runs in parallel; --out must be on storage every worker sees)")
    dask.add_argument(
        "--workers",
        type=int,
        default=None,
        help="local Dask cluster on 127.0.0.1: this many worker processes, 1 thread each, each step's child with cores/workers "
        "OpenMP threads (default: one worker per core; 0 = every step one after another in this process, no Dask)",
    )
    dask.add_argument("--scheduler", default=None, metavar="ADDRESS", help="an existing Dask scheduler (tcp:// or tls://) instead of a local cluster")
    dask.add_argument("--tls-ca-file", default=None, metavar="FILE", help="with a tls:// --scheduler: the CA certificate")
    dask.add_argument("--tls-cert", default=None, metavar="FILE", help="with a tls:// --scheduler: this client's certificate")
    dask.add_argument("--tls-key", default=None, metavar="FILE", help="with a tls:// --scheduler: this client's private key")


def run(args) -> int:
    path = Path(args.experiment) if args.experiment else DEFAULT_EXPERIMENT
    exp = load_experiment(path)
    check_workers(args.workers, "--workers")
    if args.scheduler and args.workers is not None:
        raise UserError("--scheduler and --workers exclude each other (the scheduler's workers run the steps)")
    tls = (args.tls_ca_file, args.tls_cert, args.tls_key)
    if any(tls) and not args.scheduler:
        raise UserError("--tls-ca-file / --tls-cert / --tls-key go with --scheduler tls://ADDRESS")
    on_dask = args.workers != 0
    if not args.dry_run:  # validating and listing the steps needs no torch; running them does
        require("run", "prune")
        if on_dask:
            require("run (on Dask; --workers 0 runs every step serially)", "sweep")
        if exp.whatif is not None and exp.whatif.workers != 0:
            require("run ([whatif] on Dask; workers = 0 runs it serially)", "sweep")
    dask = DaskOptions(args.scheduler, args.workers, security(*tls)) if on_dask and not args.dry_run else None

    def on_term(signum, frame):  # SIGTERM unwinds like Ctrl-C (children die with us: PDEATHSIG)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    return run_experiment(exp, Path(args.out), dry_run=args.dry_run, report=not args.no_report, experiment_text=path.read_text(), wait=args.wait, dask=dask)
