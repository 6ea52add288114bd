"""Sparsities and N:M patterns: the ONE parser and the range checks every stage uses.

Conventions (DESIGN.md, "Conventions"):

* a **sparsity** is the fraction of weights PRUNED (0.5 = half the weights are zero);
* an **N:M pattern** keeps at most N of every M consecutive input weights, ``0 < N < M``; its
  sparsity is ``1 - N/M`` (2:4 = 50 %, 1:4 = 75 %).  Run directories record it as
  ``"pattern_convention": "n_kept_of_m"`` (:data:`PATTERN_CONVENTION`); version-1 manifests, written
  before that key, meant N PRUNED of M and are converted by :func:`pattern_label`.

A sparsity has one of three ranges, by what it means:

* :func:`check_target` — a pruning target, what a user asks ``besa prune`` / ``besa run`` for:
  ``(0, 1)``.  0 prunes nothing (that is the ``dense`` run, no pruning step) and 1 leaves nothing.
* :func:`check_layer_target` — one layer's target in a per-layer allocation
  (``--layer-sparsity``, ``allocation.json``): ``[0, 1)``.  An allocation may leave a layer dense,
  never empty it.
* :func:`check_measured` — the sparsity a mask HAS or a synthetic mask is generated with: ``[0, 1]``.
  An all-kept or all-pruned mask is a valid mask to simulate.

Bad input is a :class:`besa_common.errors.UserError` whose message starts with ``what`` (the flag or
the file key), so every caller names its own input.
"""

from __future__ import annotations

import math
import re
from typing import Any

from besa_common.errors import UserError

PATTERN_CONVENTION = "n_kept_of_m"  # the value of manifest.json "pattern_convention" (version 2)
_NM_RE = re.compile(r"\s*([0-9]+)\s*:\s*([0-9]+)\s*")
_NM_MEANING = "N:M = at most N of every M consecutive input weights KEPT, 0 < N < M; e.g. 2:4"


def _nm_error(what: str, text: Any, unstructured: bool) -> UserError:
    want = '"unstructured" or "n:m"' if unstructured else '"n:m"'
    return UserError(f"{what}: expected {want} ({_NM_MEANING}), got {text!r}")


def parse_nm(text: str, what: str = "pattern") -> tuple[int, int]:
    """``"2:4"`` -> ``(2, 4)``: N KEPT of every M, ``0 < N < M`` (spaces around the numbers are allowed)."""
    m = _NM_RE.fullmatch(text) if isinstance(text, str) else None
    if not m:
        raise _nm_error(what, text, unstructured=False)
    n, mm = int(m.group(1)), int(m.group(2))
    if not 0 < n < mm:
        raise _nm_error(what, text, unstructured=False)
    return n, mm


def parse_pattern(text: str | None, what: str = "pattern") -> tuple[int, int] | None:
    """Like :func:`parse_nm`, but ``None`` and ``"unstructured"`` mean no pattern (returns None)."""
    if text is None or text == "unstructured":
        return None
    try:
        return parse_nm(text, what)
    except UserError:
        raise _nm_error(what, text, unstructured=True) from None


def format_nm(n: int, m: int) -> str:
    """``(2, 4)`` -> ``"2:4"``: the canonical spelling (run names, manifests)."""
    return f"{n}:{m}"


def nm_sparsity(n: int, m: int) -> float:
    """Sparsity (fraction pruned) of an N:M pattern: ``1 - N/M``."""
    return 1.0 - n / m


def pattern_sparsity(text: str, what: str = "pattern") -> float:
    """Sparsity of an ``"N:M"`` string (validated by :func:`parse_nm`): ``"1:4"`` -> 0.75."""
    return nm_sparsity(*parse_nm(text, what))


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{what}: expected a number, got {type(value).__name__} {value!r}")
    v = float(value)
    if math.isnan(v):
        raise UserError(f"{what}: expected a number, got nan")
    return v


def check_target(value: Any, what: str = "sparsity") -> float:
    """A pruning target (model-wide, or one grid point of an experiment): in ``(0, 1)``."""
    v = _number(value, what)
    if not 0.0 < v < 1.0:
        raise UserError(f"{what} must be in (0, 1) (the fraction of weights pruned; 0 = the dense run), got {value}")
    return v


def check_layer_target(value: Any, what: str = "layer sparsity") -> float:
    """One layer's target in a per-layer allocation: in ``[0, 1)`` (a layer may stay dense)."""
    v = _number(value, what)
    if not 0.0 <= v < 1.0:
        raise UserError(f"{what} is {value}, expected a fraction in [0, 1) (pruned; a layer may stay dense, never be emptied)")
    return v


def check_measured(value: Any, what: str = "sparsity") -> float:
    """The sparsity of a mask, measured or generated: in ``[0, 1]``."""
    v = _number(value, what)
    if not 0.0 <= v <= 1.0:
        raise UserError(f"{what} must be in [0, 1] (the fraction of weights pruned), got {value}")
    return v


def pattern_label(value: Any, convention: Any = PATTERN_CONVENTION) -> str:
    """A recorded pattern as ``"unstructured"`` or ``"N:M"`` (N KEPT of M), for reading run directories.

    ``value`` is what a manifest or status file holds: None / ``""`` / ``"unstructured"`` /
    ``"none"``, ``"n:m"`` or ``[n, m]``.  ``convention`` None means a version-1 manifest (N PRUNED of
    M): ``"1:4"`` becomes ``"3:4"``.  Anything else is returned as text (a report shows it rather
    than failing on it).
    """
    if value in (None, "", "unstructured", "none"):
        return "unstructured"
    if isinstance(value, (list, tuple)) and len(value) == 2:
        value = format_nm(int(value[0]), int(value[1]))
    m = _NM_RE.fullmatch(str(value))
    if convention is None and m:
        n, mm = int(m.group(1)), int(m.group(2))
        return format_nm(mm - n, mm)
    return str(value)


__all__ = [
    "PATTERN_CONVENTION",
    "check_layer_target",
    "check_measured",
    "check_target",
    "format_nm",
    "nm_sparsity",
    "parse_nm",
    "parse_pattern",
    "pattern_label",
    "pattern_sparsity",
]
