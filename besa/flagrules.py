"""Flags that depend on or exclude each other, refused the same way in every command.

A flag that would be silently ignored (``simulate --batch`` without ``--context``) or that
contradicts another (``eval --eval-ids`` with ``--dataset``) is ONE line, exit 2, naming both flags.
A flag counts as given when its value is not None (a switch: when it is set), so such flags default
to None in the parser and get their real default after these checks.
"""

from __future__ import annotations

from besa_common.errors import UserError


def _given(args, flag: str) -> bool:
    """A value flag defaulting to None, or a switch (``store_true``) that was set."""
    v = getattr(args, flag.lstrip("-").replace("-", "_"), None)
    return v is not None and v is not False


def refuse_without(args, needed: str, *flags: str) -> None:
    """Each of ``flags`` only means something with ``needed``: refuse it when ``needed`` is absent."""
    if _given(args, needed):
        return
    for flag in flags:
        if _given(args, flag):
            raise UserError(f"{flag} needs {needed} (without it {flag} would be ignored)")


def refuse_together(args, flag: str, *others: str, why: str = "") -> None:
    """``flag`` excludes each of ``others``: refuse the first one given beside it."""
    if not _given(args, flag):
        return
    for other in others:
        if _given(args, other):
            raise UserError(f"{flag} and {other} exclude each other{f' ({why})' if why else ''}; drop one")
