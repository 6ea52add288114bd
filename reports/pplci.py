"""Paired perplexity comparisons: is run B's perplexity really different from run A's?

``besa eval`` keeps each window's summed NLL (``window_nll``, ``window_tokens``) and which windows
it scored (``windows_sha256``, a digest of their token ids) in ``eval.json``.  Two runs with the
same digest scored the SAME windows, so they are compared PAIRED
(:func:`besa_common.bootstrap.paired_ppl`): one bootstrap draw of windows is applied to both runs,
and the interval is that of the ratio ``ppl_worse / ppl_better`` itself.  Paired intervals are much
narrower than the two runs' own intervals, whose width is mostly "which text was hard" — shared by
every model.

:func:`pairs_table` -> one row per pair of runs of one experiment evaluated on the same windows:
``experiment, better, worse, ppl_better, ppl_worse, ratio`` (worse / better, ≥ 1), ``ratio_low,
ratio_high`` (95 % percentile bootstrap), ``diff`` (ppl_worse − ppl_better) ``diff_low, diff_high``,
``resolved`` (the ratio interval excludes 1), ``windows``, ``tokens``.  :func:`ranking_lines` gives one
line per group of paired runs: the runs by perplexity, ``<`` between neighbours whose difference is
resolved, ``≈`` where it is not.  Runs without per-window NLLs (eval.json of an older version) are
left out, and say so in :func:`unpaired_note`.
"""

from __future__ import annotations

from itertools import combinations
from typing import Iterable

import numpy as np
import pandas as pd

from besa_common.bootstrap import paired_ppl
from reports.table import RunInfo, ppl_record

COLUMNS = [
    "experiment",
    "better",
    "worse",
    "ppl_better",
    "ppl_worse",
    "ratio",
    "ratio_low",
    "ratio_high",
    "diff",
    "diff_low",
    "diff_high",
    "resolved",
    "windows",
    "tokens",
]


def window_record(info: RunInfo) -> dict | None:
    """The run's per-window record ``{"nll", "tokens", "key", "ppl"}``, or None when eval.json has none
    (or its arrays are inconsistent).  ``key`` = (experiment, windows_sha256): runs with equal keys pair."""
    rec = ppl_record(info.eval)
    r = rec.get("record") or {}
    nll, tok, sha = r.get("window_nll"), r.get("window_tokens"), r.get("windows_sha256")
    if not (isinstance(nll, list) and isinstance(tok, list) and isinstance(sha, str)) or len(nll) != len(tok) or not nll:
        return None
    try:
        nll_a, tok_a = np.asarray(nll, dtype=np.float64), np.asarray(tok, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return {"nll": nll_a, "tokens": tok_a, "key": (info.experiment, sha), "ppl": rec["ppl"]}


def _groups(runs: Iterable[RunInfo]) -> dict[tuple, list[tuple[str, dict]]]:
    groups: dict[tuple, list[tuple[str, dict]]] = {}
    for info in runs:
        w = window_record(info)
        if w is not None:
            groups.setdefault(w["key"], []).append((info.label or info.name, w))
    return groups


def pairs_table(runs: Iterable[RunInfo]) -> pd.DataFrame:
    """Every pair of runs evaluated on the same windows (see the module docstring), better run first."""
    rows = []
    for (experiment, _), members in _groups(runs).items():
        members = sorted(members, key=lambda m: (m[1]["ppl"], m[0]))
        for (a, wa), (b, wb) in combinations(members, 2):
            if not np.array_equal(wa["tokens"], wb["tokens"]):
                continue  # same token ids, different window split: not the same items
            p = paired_ppl(wa["nll"], wb["nll"], wa["tokens"])
            r, d = p["ratio"], p["diff"]
            rows.append(
                {
                    "experiment": experiment,
                    "better": a,
                    "worse": b,
                    "ppl_better": wa["ppl"],
                    "ppl_worse": wb["ppl"],
                    "ratio": r.estimate,
                    "ratio_low": r.low,
                    "ratio_high": r.high,
                    "diff": d.estimate,
                    "diff_low": d.low,
                    "diff_high": d.high,
                    "resolved": r.resolved,
                    "windows": len(wa["nll"]),
                    "tokens": int(wa["tokens"].sum()),
                }
            )
    return pd.DataFrame(rows, columns=COLUMNS)


def ranking_lines(pairs: pd.DataFrame) -> list[str]:
    """Per experiment group: ``dense < sparsegpt-s50 < besa-s50 ≈ wanda-s50 (…)`` — neighbours by
    perplexity, ``<`` when their paired difference is resolved (95 %), ``≈`` when it is not."""
    lines = []
    for exp, g in pairs.groupby("experiment", sort=False):
        order = list(dict.fromkeys(list(g["better"]) + list(g["worse"])))
        ppl = {**dict(zip(g["better"], g["ppl_better"])), **dict(zip(g["worse"], g["ppl_worse"]))}
        order.sort(key=lambda r: (ppl[r], r))
        resolved = {(a, b): bool(v) for a, b, v in zip(g["better"], g["worse"], g["resolved"])}
        text = order[0]
        for a, b in zip(order, order[1:]):
            text += (" < " if resolved.get((a, b), False) else " ≈ ") + b
        n, k = len(g), int(g["resolved"].sum())
        head = f"{exp}: " if pairs["experiment"].nunique() > 1 else ""
        lines.append(
            f"{head}{text} — {k} of {n} pairs resolved at 95 % ({int(g['windows'].iloc[0])} windows, {int(g['tokens'].iloc[0]):,} tokens, paired bootstrap)"
        )
    return lines


def unpaired_note(runs: Iterable[RunInfo]) -> str:
    """A line naming the runs with a perplexity but no per-window NLLs ("" when none)."""
    names = [i.label or i.name for i in runs if ppl_record(i.eval)["ppl"] is not None and window_record(i) is None]
    return f"No per-window NLLs in eval.json (evaluated before they were kept; rerun besa eval): {', '.join(names)}." if names else ""


def display_pairs(pairs: pd.DataFrame) -> pd.DataFrame:
    """The pairs for a page or Markdown: readable column names, ``resolved`` as yes / no."""
    cols = {
        "better": "better",
        "worse": "worse",
        "ppl_better": "ppl better",
        "ppl_worse": "ppl worse",
        "ratio": "ppl ratio (worse / better)",
        "ratio_low": "95% low",
        "ratio_high": "95% high",
        "resolved": "resolved",
    }
    keep = (["experiment"] if pairs["experiment"].nunique() > 1 else []) + list(cols)
    out = pairs[keep].rename(columns=cols)
    out["resolved"] = ["yes" if v else "no" for v in pairs["resolved"]]
    return out


CAPTION = (
    "Every pair of runs evaluated on the same windows, compared PAIRED: each bootstrap draw of windows "
    "(10,000 draws, seeded) is applied to both runs, and the 95 % percentile interval is that of the ratio "
    "ppl worse / ppl better itself. Resolved = the interval excludes 1 (the order is not window noise). "
    "Each run's own interval is in the table above (ppl 95% low / high); it is much wider, because most "
    "of it is which text is hard, which every model shares. All pairs: ppl_pairs.csv."
)
