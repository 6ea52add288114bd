"""The ``besa`` command line: one entry point, one subcommand per stage.

Each subcommand lives in its own module, imported only when it runs, so ``besa simulate`` and
``besa report`` never import torch.  A command module provides::

    HELP: str                                  # one line for ``besa --help``
    def add_arguments(parser) -> None          # its flags
    def run(args) -> int                       # exit status; raise UserError for bad input

Bad input anywhere raises :class:`besa_common.errors.UserError`; it is printed as one line on
stderr and the exit status is 2.  Adding a command = one line in :data:`COMMANDS` (and one in
:data:`NEEDS` when it needs an optional extra).

A command whose optional dependencies are missing says which extra to install, in one line
(``besa prune needs: pip install 'besa-toolkit[prune]'``), exit 2: checked from :data:`NEEDS`
before its module is imported, and for an import that fails later (``besa eval --tasks`` without
lm-eval) from the module name (:mod:`besa_common.extras`).
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys

from besa import __version__
from besa_common.errors import UserError
from besa_common.extras import MissingExtra, extra_for_module, install_hint, require

# name -> (module, one-line help).  The module is imported lazily.
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("besa.commands.data", "prepare the offline corpora (run once by the set-up script)"),
    "prune": ("besa.commands.prune", "prune a model block by block and write DIR/masks.safetensors"),
    "eval": ("besa.commands.eval", "perplexity (and zero-shot accuracy) of a model with optional masks"),
    "export": ("besa.commands.export", "save a pruned model as a HF directory or compressed-tensors"),
    "simulate": ("besa.commands.simulate", "simulate masks on a sparse accelerator, write layers.csv + summary.json"),
    "run": ("besa.commands.run", "run a whole experiment (prune -> eval -> simulate -> report)"),
    "masks": ("besa.commands.masks", "extract keep masks from a checkpoint (HF zeros, compressed-tensors bitmasks, GGUF)"),
    "report": ("besa.commands.report", "regenerate the tables and the HTML report from run directories"),
    "sweep": ("besa.commands.sweep", "what-if hardware sweep on Dask"),
}
# name -> extras checked before the command's module is imported (the rest of the torch-free
# commands run on the core install; ``besa run`` checks ``prune`` itself, after --dry-run).
NEEDS: dict[str, tuple[str, ...]] = {
    "data": ("prune",),
    "prune": ("prune",),
    "eval": ("prune",),
    "export": ("prune",),
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is ONE line on stderr (exit 2), like every other bad input."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser_for(command: str | None) -> tuple[argparse.ArgumentParser, object | None]:
    parser = _Parser(prog="besa", description="Prune LLaMA-family models (BESA and baselines) and simulate them on a sparse accelerator.")
    parser.add_argument("--version", action="version", version=f"besa {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    module = None
    for name, (modname, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if name == command:
            require(name, *NEEDS.get(name, ()))
            module = importlib.import_module(modname)
            module.add_arguments(p)
    return parser, module


def main(argv: list[str] | None = None) -> int:
    if hasattr(signal, "SIGPIPE") and argv is None:
        # `besa simulate ... | head` should end quietly, like any Unix tool.
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in COMMANDS else None
    try:
        parser, module = _parser_for(command)
        args = parser.parse_args(argv)
        if module is None:
            parser.print_help()
            return 2
        return int(module.run(args) or 0)
    except MissingExtra as exc:
        print(exc, file=sys.stderr)
        return 2
    except UserError as exc:
        print(f"besa {command or ''}: error: {exc}".replace("  ", " "), file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        extra = extra_for_module(exc.name)
        if extra is None:
            raise  # not an optional dependency: a broken install or a bug, keep the traceback
        print(f"besa {command} needs: {install_hint(extra)} (module {exc.name} is not installed)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("besa: interrupted (finished work is kept; rerun the same command to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
