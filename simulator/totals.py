"""Whole-model totals from the per-layer rows of ``layers.csv``: the ONE implementation.

``summary.json``'s ``totals`` (:func:`simulator.run.summarize`) and every ``besa sweep`` result row
(:mod:`simulator.sweep.worker`) are built by :func:`model_totals`, so the two can never disagree.

For each token count (the rows with that ``tokens``; ``None`` = every row):

* ``layers`` — rows (weight matrices) summed over;
* each column of :data:`simulator.schema.SUM_COLUMNS` — summed, but only when EVERY row has it: a sum over some of the
  layers is not a model total (the n:m engine, for one, runs only the layers that fit its pattern);
* ``speedup_vs_dense`` = Σ dense_cycles / Σ cycles, ``speedup_vs_nm`` = Σ nm_cycles / Σ cycles (> 1 = faster);
* ``memory_bound_share`` — fraction of the layers whose ``bound`` is ``memory``; ``bound`` = ``memory``
  when that fraction is above one half, else ``compute``;
* ``utilization`` — cycle-weighted mean of the per-layer utilization, i.e. Σ nnz·N / (MACs per cycle ·
  Σ cycles): the fraction of the machine's multiply-accumulates doing useful work;
* ``energy_uj``, ``dense_energy_uj`` (µJ) and ``energy_vs_dense`` = dense / run energy (> 1 = less
  energy), when the rows carry energy (memory modes).

Sums are floats (exact for integers below 2**53); :func:`simulator.run.summarize` writes the counts as
integers.  Reads each column out of pandas once: on a sweep of trivial points this is on the critical path.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from simulator.schema import ENERGY_SUM_COLUMNS, SUM_COLUMNS


def _floats(arr) -> np.ndarray:
    """A pandas column's values as float64, missing -> NaN (masked Int64 arrays included)."""
    return arr.to_numpy("float64", na_value=np.nan) if hasattr(arr, "isna") else np.asarray(arr, dtype=float)


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def model_totals(layers, tokens: list[int | None]) -> list[dict[str, Any]]:
    """The totals of ``layers`` (a ``layers.csv`` frame) for each entry of ``tokens`` (see the module docstring)."""
    cols = set(layers.columns)
    num = {c: _floats(layers[c].array) for c in (*SUM_COLUMNS, *ENERGY_SUM_COLUMNS, "utilization") if c in cols}
    bound = np.asarray(layers["bound"].array) if "bound" in cols else None
    tok = _floats(layers["tokens"].array) if "tokens" in cols else None
    out = []
    for t in tokens:
        sel = np.ones(len(layers), bool) if t is None or tok is None else (tok == t)
        out.append(_totals_of(num, bound, sel))
    return out


def _totals_of(num: dict[str, np.ndarray], bound: np.ndarray | None, sel: np.ndarray) -> dict[str, Any]:
    row: dict[str, Any] = {"layers": int(sel.sum())}
    if not sel.any():
        return row
    full = {c: v[sel] for c, v in num.items() if not np.isnan(v[sel]).any()}  # columns every selected row has
    for c in SUM_COLUMNS:
        if c in full:
            row[c] = float(full[c].sum())
    if "cycles" in row:  # ratios are NaN for a zero-cycle total
        if "dense_cycles" in row:
            row["speedup_vs_dense"] = _ratio(row["dense_cycles"], row["cycles"])
        if "nm_cycles" in row:
            row["speedup_vs_nm"] = _ratio(row["nm_cycles"], row["cycles"])
        if "utilization" in num:
            row["utilization"] = _ratio(float(np.nansum(num["utilization"][sel] * num["cycles"][sel])), row["cycles"])
    b = bound[sel] if bound is not None else None
    if b is not None and all(isinstance(x, str) for x in b):
        row["memory_bound_share"] = float((b == "memory").mean())
        row["bound"] = "memory" if row["memory_bound_share"] > 0.5 else "compute"
    if all(c in full for c in ENERGY_SUM_COLUMNS):
        row["energy_uj"] = float(full["energy_pj"].sum()) / 1e6
        row["dense_energy_uj"] = float(full["dense_energy_pj"].sum()) / 1e6
        row["energy_vs_dense"] = _ratio(row["dense_energy_uj"], row["energy_uj"])
    return row
