"""Zero-shot accuracy in the report: HellaSwag ``acc_norm`` per run, and paired differences between runs.

``besa eval --tasks hellaswag`` (``[eval].hellaswag`` of ``besa run``) writes, under ``"tasks"`` of
``eval.json``, the task's ``acc_norm`` and ``acc_norm_stderr`` (fractions; lm-eval's standard error
``sqrt(p(1-p)/(n-1))``), ``n``, and per task example its row index (``ids``) and 0/1 correctness
(``correct_norm``).  Two runs that scored the same examples (same ``ids``: same ``--limit`` and
seed) are compared PAIRED (:func:`besa_common.paired.paired_difference`): the difference of their
accuracies, with the standard error of the mean per-example difference.  Examples both runs get
right or both get wrong cancel, so paired intervals are much narrower than the two runs' own.

:func:`accuracy_columns` -> the run-level columns of :mod:`reports.table` (``hellaswag``,
``hellaswag_se`` in percent, ``hellaswag_n``); :func:`pairs_table` -> one row per pair of runs of one
experiment scored on the same examples.  No torch; reads only the eval.json dict.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any, Iterable

import pandas as pd

from besa_common.paired import paired_difference

TASK = "hellaswag"
METRIC = "acc_norm"  # the length-normalised accuracy HellaSwag is usually reported with
CORRECT = "correct_norm"  # its per-example 0/1 list in eval.json
COLUMNS = ["experiment", "better", "worse", "acc_better", "acc_worse", "diff", "diff_se", "diff_low", "diff_high", "resolved", "tasks", "discordant"]
CAPTION = (
    f"HellaSwag {METRIC} (%) of every pair of runs scored on the same tasks, better run first: diff = better − worse in "
    "points, ± its paired standard error and 95 % interval (mean of the per-task differences); resolved = the interval "
    "excludes 0; discordant = tasks exactly one of the two got right."
)


def task_record(ev: dict[str, Any], task: str = TASK) -> dict[str, Any] | None:
    """The task's entry of eval.json's ``tasks``, or None when absent or without ``acc_norm``."""
    rec = (ev.get("tasks") or {}).get(task) if isinstance(ev.get("tasks"), dict) else None
    if not isinstance(rec, dict) or not isinstance(rec.get(METRIC), (int, float)) or isinstance(rec.get(METRIC), bool):
        return None
    return rec


def accuracy_columns(ev: dict[str, Any]) -> dict[str, Any]:
    """``hellaswag`` (acc_norm, %), ``hellaswag_se`` (its standard error, points), ``hellaswag_n`` (tasks); None when not evaluated."""
    rec = task_record(ev)
    if rec is None:
        return {"hellaswag": None, "hellaswag_se": None, "hellaswag_n": None}
    se = rec.get(f"{METRIC}_stderr")
    return {
        "hellaswag": 100.0 * float(rec[METRIC]),
        "hellaswag_se": None if not isinstance(se, (int, float)) else 100.0 * float(se),
        "hellaswag_n": rec.get("n"),
    }


def _per_example(ev: dict[str, Any]) -> tuple[tuple[int, ...], list[int]] | None:
    rec = task_record(ev)
    if rec is None:
        return None
    ids, correct = rec.get("ids"), rec.get(CORRECT)
    if not isinstance(ids, list) or not isinstance(correct, list) or len(ids) != len(correct) or len(ids) < 2:
        return None
    return tuple(int(i) for i in ids), [int(c) for c in correct]


def pairs_table(runs: Iterable[Any]) -> pd.DataFrame:
    """Every pair of runs (``reports.table.RunInfo``) of one experiment scored on the same HellaSwag tasks."""
    groups: dict[tuple, list[tuple[str, list[int]]]] = {}
    for info in runs:
        pe = _per_example(info.eval)
        if pe is not None:
            groups.setdefault((info.experiment, pe[0]), []).append((info.label or info.name, pe[1]))
    rows = []
    for (experiment, ids), members in groups.items():
        members = sorted(members, key=lambda m: (-sum(m[1]), m[0]))
        for (a, ca), (b, cb) in combinations(members, 2):
            d = paired_difference(ca, cb)
            lo, hi = d["ci95"]
            rows.append(
                {
                    "experiment": experiment,
                    "better": a,
                    "worse": b,
                    "acc_better": 100.0 * sum(ca) / len(ca),
                    "acc_worse": 100.0 * sum(cb) / len(cb),
                    "diff": 100.0 * d["diff"],
                    "diff_se": 100.0 * d["se"],
                    "diff_low": 100.0 * lo,
                    "diff_high": 100.0 * hi,
                    "resolved": bool(lo > 0 or hi < 0),
                    "tasks": len(ids),
                    "discordant": d["a_only"] + d["b_only"],
                }
            )
    return pd.DataFrame(rows, columns=COLUMNS)


def display_pairs(pairs: pd.DataFrame) -> pd.DataFrame:
    """The pairs table for the page: one text cell per comparison, numbers rounded for reading."""
    out = pd.DataFrame(
        {
            "better": pairs["better"],
            "worse": pairs["worse"],
            f"{METRIC} % (better / worse)": [f"{a:.1f} / {b:.1f}" for a, b in zip(pairs["acc_better"], pairs["acc_worse"])],
            "diff (points)": [f"+{d:.1f} ± {s:.1f}" for d, s in zip(pairs["diff"], pairs["diff_se"])],
            "95 % interval": [f"[{lo:+.1f}, {hi:+.1f}]" for lo, hi in zip(pairs["diff_low"], pairs["diff_high"])],
            "resolved": ["yes" if r else "no" for r in pairs["resolved"]],
            "tasks": pairs["tasks"],
        }
    )
    if pairs["experiment"].nunique() > 1:
        out.insert(0, "experiment", pairs["experiment"])
    return out
