"""Check ``besa`` command lines against the commands' REAL argument parsers, without running them.

``besa run`` (and ``besa run --dry-run``: the same code path) hands every command line it is about
to run — and one small line per ``[options.<method>]`` key, per dataset — to :func:`check_commands`
before anything starts, so an unknown ``[options.*]`` flag, a wrong value type or an unknown
calibration dataset is a one-line error in seconds instead of a failed step after minutes of
pruning.  The parsers of ``besa prune`` / ``besa eval`` need torch-importing modules, so they are
built in ONE child process (``python -m besa.argcheck``; ~2 s of imports) that reads the command
lines as JSON on stdin and answers one error (or null) per line.  A command module may define
``validate(args)`` (raise UserError) for checks beyond argparse that need no model or data; it is
called too.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import subprocess
import sys

from besa.cli import COMMANDS
from besa_common.errors import UserError


class MissingParsers(UserError):
    """The parsers could not be built: an optional dependency (torch, the ``prune`` extra) is missing."""


class _Raising(argparse.ArgumentParser):
    def error(self, message: str):  # type: ignore[override]
        raise UserError(message)


def _parsers():
    """A function command -> (its real parser, raising instead of exiting; its module), cached."""
    cache: dict[str, tuple] = {}

    def get(command: str):
        if command not in cache:
            module = importlib.import_module(COMMANDS[command][0])
            parser = _Raising(prog=f"besa {command}", add_help=False)
            module.add_arguments(parser)
            cache[command] = (parser, module)
        return cache[command]

    return get


def _check_one(argv: list[str], get) -> str | None:
    try:
        parser, module = get(argv[0])
        with contextlib.redirect_stderr(io.StringIO()):
            args = parser.parse_args(argv[1:])
        validate = getattr(module, "validate", None)
        if callable(validate):
            validate(args)
    except UserError as exc:
        return str(exc)
    except SystemExit:  # a parser that exits anyway (a custom action)
        return "rejected by its argument parser"
    return None


def check_commands(argvs: list[list[str]]) -> list[str | None]:
    """One error message (or None) per command line ``[command, arg, ...]``; raises UserError when
    the parsers cannot be built at all (e.g. torch not installed)."""
    if not argvs:
        return []
    proc = subprocess.run([sys.executable, "-m", "besa.argcheck"], input=json.dumps(argvs), capture_output=True, text=True)
    try:
        answer = json.loads(proc.stdout)
    except ValueError:
        tail = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise UserError(f"cannot check the step command lines: {tail}") from None
    if isinstance(answer, dict):
        raise MissingParsers(f"cannot check the step command lines: {answer.get('fatal')}")
    return answer


def main() -> int:
    argvs = json.loads(sys.stdin.read())
    try:
        get = _parsers()
        errors = [_check_one(a, get) for a in argvs]
    except ImportError as exc:  # e.g. the prune extra is not installed
        print(json.dumps({"fatal": f"{type(exc).__name__}: {exc}"}))
        return 0
    print(json.dumps(errors))
    return 0


if __name__ == "__main__":
    sys.exit(main())
