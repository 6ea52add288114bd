"""Readable numbers for the report's tables: no ``2.738e+04``, units in the formatting.

``cell(column, value)`` picks the format from the column name:

* sparsities (``*sparsity*``) -> percent, ``50.0%`` (fraction of weights pruned);
* speedups and energy ratios (``speedup*``, ``* ×``, ``*energy*``) -> ``1.23×``;
* perplexity -> two decimals (``63.30``), thousands separators from 1,000;
* counts (integral values: cycles, bytes, tokens) -> ``27,380`` with thousands separators;
* any other float -> at most 4 significant digits, thousands separators above 10,000.
"""

from __future__ import annotations

import math
from typing import Any


def _missing(v: Any) -> bool:
    if v is None:
        return True
    try:
        return isinstance(v, float) and math.isnan(v) or (hasattr(v, "__float__") and not isinstance(v, (str, bool)) and math.isnan(float(v)))
    except (TypeError, ValueError):
        return False


def number(v: float, digits: int = 4) -> str:
    """A float with ``digits`` significant digits, thousands separators, never exponent notation."""
    v = float(v)
    if not math.isfinite(v):
        return str(v)
    if v == int(v) and abs(v) < 1e15:
        return f"{int(v):,}"
    mag = abs(v)
    if mag >= 10**digits:
        return f"{v:,.0f}"
    decimals = max(0, digits - 1 - int(math.floor(math.log10(mag)))) if mag > 0 else 0
    text = f"{v:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def ratio(v: float) -> str:
    """A speedup or an energy ratio: ``1.23×`` (three digits after the point below 0.1×)."""
    v = float(v)
    return f"{v:.3f}×" if abs(v) < 0.1 else f"{v:.2f}×"


def percent(v: float) -> str:
    """A fraction as a percentage with one decimal: 0.5 -> ``50.0%``."""
    return f"{100.0 * float(v):.1f}%"


def cell(column: str, v: Any) -> str:
    """The text of one table cell (see the module docstring for the rules)."""
    if _missing(v):
        return ""
    if isinstance(v, (bool, str)) or not hasattr(v, "__float__"):
        return str(v)
    col = str(column).lower()
    if "sparsity" in col:
        return percent(v)
    if col.startswith("speedup") or col.endswith("×") or "energy_vs" in col or col.endswith(" energy"):
        return ratio(v)
    if col == "ppl" or col.startswith("ppl_ci") or col.startswith("ppl 95%"):
        return f"{float(v):.2f}" if abs(float(v)) < 1000 else number(v)
    if col == "wbits" or col.endswith("tokens") or col in ("tokens", "layers", "ppl_seqlen", "ppl_windows"):
        return f"{int(float(v)):,}"
    return number(v)
