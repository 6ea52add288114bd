"""Percentile bootstrap intervals over evaluation items (perplexity windows, benchmark examples).

Seeded and deterministic: the same arrays, seed and settings give the same interval, bit for bit.
One call resamples ITEMS (with replacement, ``n`` of ``n``) through ``scipy.stats.bootstrap`` with
``paired=True``: every array of the call is indexed by the SAME draw, so a paired comparison of two
runs resamples the same windows (examples) for both, and the interval is that of the difference
itself, not of two independent noises.

* :func:`ppl` — ``exp(Σ nll / Σ tokens)`` over windows (``pruning.evaluate``'s arithmetic);
* :func:`ppl_ci` — the interval of one run's perplexity;
* :func:`paired_ppl` — run B against run A on the same windows: the ppl ratio B / A and the
  difference B − A with their intervals; ``resolved`` when the ratio interval excludes 1;
* :func:`paired_mean_diff` — per-item paired scores (e.g. per-example accuracy 0/1): mean(B − A).

Fewer than 2 items, or a non-finite value, give no interval (``None``): a bootstrap of one item is
no uncertainty estimate, and a destroyed model's infinite NLL has none either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

LEVEL = 0.95
RESAMPLES = 10_000
SEED = 0
METHOD = "percentile"


def settings(level: float = LEVEL, resamples: int = RESAMPLES, seed: int = SEED) -> dict:
    """What an interval was computed with (recorded beside it, e.g. in eval.json)."""
    return {"method": METHOD, "level": level, "resamples": resamples, "seed": seed}


def ppl(nll, tokens, axis: int = -1):
    """Perplexity of windows with summed NLLs ``nll`` (nats) over ``tokens`` tokens each."""
    return np.exp(np.sum(nll, axis=axis) / np.sum(tokens, axis=axis))


def bootstrap_ci(statistic: Callable, arrays: Sequence, *, level: float = LEVEL, resamples: int = RESAMPLES, seed: int = SEED) -> tuple[float, float] | None:
    """The ``level`` percentile-bootstrap interval of ``statistic(*arrays, axis=-1)``, resampling the
    items (the last axis) of every array with the same indices; None with fewer than 2 items or a
    non-finite value.  ``statistic`` must accept ``axis`` (vectorised over resamples)."""
    from scipy.stats import bootstrap

    data = tuple(np.asarray(a, dtype=np.float64) for a in arrays)
    n = {a.shape[-1] for a in data}
    if len(n) != 1:
        raise ValueError(f"arrays of different lengths {sorted(n)}: a paired bootstrap needs one value per item in each")
    if n.pop() < 2 or not all(np.isfinite(a).all() for a in data):
        return None
    res = bootstrap(
        data,
        statistic,
        n_resamples=resamples,
        paired=True,
        vectorized=True,
        axis=-1,
        confidence_level=level,
        method=METHOD,
        rng=np.random.default_rng(seed),
    )
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return (lo, hi) if np.isfinite(lo) and np.isfinite(hi) else None


def ppl_ci(nll, tokens, **kw) -> tuple[float, float] | None:
    """Interval of the perplexity of windows (``nll`` summed per window, ``tokens`` per window)."""
    return bootstrap_ci(lambda n, t, axis=-1: ppl(n, t, axis), (nll, tokens), **kw)


@dataclass(frozen=True)
class Paired:
    """B against A on the same items: ``estimate`` on the full data, ``low``/``high`` its interval
    (None when there is none); ``null`` = the value of no difference (1 for a ratio, 0 for a
    difference); ``resolved`` = the interval excludes ``null``."""

    estimate: float
    low: float | None
    high: float | None
    null: float

    @property
    def resolved(self) -> bool:
        return self.low is not None and (self.low > self.null or self.high < self.null)


def paired_ppl(nll_a, nll_b, tokens, **kw) -> dict[str, Paired]:
    """Run B against run A evaluated on the SAME windows (``tokens`` per window, shared):
    ``{"ratio": ppl_B / ppl_A, "diff": ppl_B − ppl_A}``, each a :class:`Paired`."""
    a, b, t = (np.asarray(x, dtype=np.float64) for x in (nll_a, nll_b, tokens))

    def ratio(x, y, z, axis=-1):
        return ppl(y, z, axis) / ppl(x, z, axis)

    def diff(x, y, z, axis=-1):
        return ppl(y, z, axis) - ppl(x, z, axis)

    out = {}
    for name, f, null in (("ratio", ratio, 1.0), ("diff", diff, 0.0)):
        ci = bootstrap_ci(f, (a, b, t), **kw)
        out[name] = Paired(float(f(a, b, t)), *(ci or (None, None)), null)
    return out


def paired_mean_diff(a, b, **kw) -> Paired:
    """Per-item paired scores (same items for both; e.g. accuracy 0/1): mean(B − A) and its interval."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)

    def f(u, v, axis=-1):
        return np.mean(v - u, axis=axis)

    ci = bootstrap_ci(f, (x, y), **kw)
    return Paired(float(f(x, y)), *(ci or (None, None)), 0.0)
