"""Paired comparison of two runs scored on the SAME examples (per-example 0/1 correctness).

Two accuracies measured on the same tasks differ by much less noise than two independent
samples would: the tasks both runs get right (or both get wrong) cancel.  The paired standard
error of the difference is ``sd(a - b) / sqrt(n)`` over the per-example differences (sample
standard deviation, ``n - 1``), the usual large-sample interval for a mean difference.
NumPy only: the report side (no torch) uses it as well.
"""

from __future__ import annotations

import math
from typing import Sequence

from besa_common.errors import UserError


def align(ids_a: Sequence[int], a: Sequence[int], ids_b: Sequence[int], b: Sequence[int]) -> tuple[list[int], list[int], list[int]]:
    """The examples both runs scored: ``(ids, a, b)`` in ascending id order."""
    da, db = dict(zip(ids_a, a)), dict(zip(ids_b, b))
    common = sorted(set(da) & set(db))
    return common, [da[i] for i in common], [db[i] for i in common]


def paired_difference(a: Sequence[int], b: Sequence[int]) -> dict:
    """``mean(a) - mean(b)`` over paired 0/1 outcomes, with its paired standard error.

    Returns ``{"n", "diff", "se", "ci95": [lo, hi], "a_only", "b_only"}``; ``a_only`` / ``b_only``
    count the examples only ``a`` / only ``b`` got right (the discordant pairs that carry the
    difference).  ``se`` is None for fewer than two pairs.
    """
    if len(a) != len(b):
        raise UserError(f"paired comparison needs the same examples: {len(a)} vs {len(b)} outcomes")
    n = len(a)
    if n == 0:
        raise UserError("paired comparison of zero examples")
    d = [int(x) - int(y) for x, y in zip(a, b)]
    mean = sum(d) / n
    se = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1) / n) if n > 1 else None
    ci = None if se is None else [mean - 1.96 * se, mean + 1.96 * se]
    return {"n": n, "diff": mean, "se": se, "ci95": ci, "a_only": d.count(1), "b_only": d.count(-1)}
