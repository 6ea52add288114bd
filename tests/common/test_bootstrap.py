"""besa_common.bootstrap: percentile bootstrap intervals over windows / examples, paired comparisons.

Hand-computed cases use few items, where the extreme resamples are likelier than the 2.5 % tail
(all-lowest of 2 items: 1/4; of 3 items: 1/27 = 3.7 %), so the interval ends are exact values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from besa_common.bootstrap import bootstrap_ci, paired_mean_diff, paired_ppl, ppl, ppl_ci


def test_ppl_is_ratio_of_sums():
    assert ppl([10.0, 20.0], [5, 5]) == pytest.approx(math.exp(3.0))
    assert ppl(np.array([[2.0, 4.0], [6.0, 6.0]]), np.array([[1, 1], [2, 2]]), axis=-1) == pytest.approx([math.exp(3.0), math.exp(3.0)])


def test_ppl_interval_by_hand():
    # 2 windows of 5 tokens, NLL 10 and 20: resample means 2, 3, 3, 4 nats -> bounds exp(2), exp(4)
    lo, hi = ppl_ci([10.0, 20.0], [5, 5])
    assert lo == pytest.approx(math.exp(2.0), rel=1e-12) and hi == pytest.approx(math.exp(4.0), rel=1e-12)
    # 3 windows: each extreme resample has probability 1/27 > 2.5 %
    lo, hi = ppl_ci([3.0, 6.0, 9.0], [3, 3, 3])
    assert lo == pytest.approx(math.e, rel=1e-12) and hi == pytest.approx(math.exp(3.0), rel=1e-12)


def test_paired_constant_shift_is_resolved_exactly():
    # B costs c nats more per token in EVERY window: every resample's ratio is exp(c) (and its difference
    # follows the resampled A), so the ratio interval is the single point exp(c), far from 1
    rng = np.random.default_rng(0)
    tok = np.full(20, 512.0)
    a = rng.normal(3.3, 0.3, 20) * tok
    b = a + 0.01 * tok
    p = paired_ppl(a, b, tok)
    assert p["ratio"].estimate == pytest.approx(math.exp(0.01), rel=1e-12)
    assert p["ratio"].low == pytest.approx(math.exp(0.01), rel=1e-9) and p["ratio"].high == pytest.approx(math.exp(0.01), rel=1e-9)
    assert p["ratio"].resolved and p["diff"].resolved and p["diff"].low > 0
    # while each run's own interval overlaps the other's: unpaired, the difference would look like noise
    la, ha = ppl_ci(a, tok)
    lb, hb = ppl_ci(b, tok)
    assert lb < ha and la < hb


def test_paired_mixed_sign_not_resolved_by_hand():
    # window 1: B worse by 2 nats, window 2: B better by 2 (5 tokens each): resample ratios
    # exp(+0.4) (1/4), 1 (1/2), exp(-0.4) (1/4) -> interval [exp(-0.4), exp(0.4)], contains 1
    p = paired_ppl([10.0, 10.0], [12.0, 8.0], [5, 5])
    r = p["ratio"]
    assert r.estimate == pytest.approx(1.0)
    assert r.low == pytest.approx(math.exp(-0.4), rel=1e-12) and r.high == pytest.approx(math.exp(0.4), rel=1e-12)
    assert not r.resolved and not p["diff"].resolved


def test_paired_mean_diff_by_hand():
    # per-example accuracy A = 1,1,1 and B = 0,1,1: differences -1,0,0; resample means -1 (1/27), ..., 0 (8/27)
    d = paired_mean_diff([1, 1, 1], [0, 1, 1])
    assert d.estimate == pytest.approx(-1 / 3) and d.low == pytest.approx(-1.0) and d.high == pytest.approx(0.0)
    assert not d.resolved
    assert paired_mean_diff([0] * 30, [1] * 30).resolved  # B right everywhere A is wrong


def test_degenerate_inputs_give_no_interval():
    assert ppl_ci([10.0], [5]) is None  # one window: no uncertainty estimate
    assert ppl_ci([10.0, math.inf], [5, 5]) is None  # a destroyed model
    p = paired_ppl([1.0], [2.0], [1])
    assert p["ratio"].low is None and not p["ratio"].resolved and p["ratio"].estimate == pytest.approx(math.e)
    with pytest.raises(ValueError, match="different lengths"):
        bootstrap_ci(lambda x, y, axis=-1: x.mean(axis), ([1.0, 2.0], [1.0, 2.0, 3.0]))


windows = st.lists(st.floats(0.5, 12.0), min_size=2, max_size=12)


@settings(max_examples=40, deadline=None)
@given(windows, st.integers(0, 2**32 - 1))
def test_ppl_interval_properties(per_token, seed):
    nll = np.asarray(per_token) * 64.0
    tok = np.full(len(nll), 64.0)
    ci = ppl_ci(nll, tok, seed=seed, resamples=2000)
    assert ci is not None
    lo, hi = ci
    # every resample's ppl is a token-weighted mean of the windows' -> inside their range
    assert math.exp(min(per_token)) * (1 - 1e-9) <= lo <= hi <= math.exp(max(per_token)) * (1 + 1e-9)
    assert ppl_ci(nll, tok, seed=seed, resamples=2000) == ci  # deterministic, bit for bit


@settings(max_examples=40, deadline=None)
@given(windows, st.lists(st.floats(-1.0, 1.0), min_size=12, max_size=12), st.integers(0, 2**32 - 1))
def test_paired_properties(per_token, shift, seed):
    n = len(per_token)
    tok = np.full(n, 32.0)
    a = np.asarray(per_token) * 32.0
    b = a + np.asarray(shift[:n]) * 32.0
    ab, ba = paired_ppl(a, b, tok, seed=seed, resamples=2000), paired_ppl(b, a, tok, seed=seed, resamples=2000)
    # swapping the runs negates the difference, resample for resample (same draws)
    assert ab["diff"].low == pytest.approx(-ba["diff"].high, abs=1e-9 * (1 + abs(ab["diff"].low)))
    assert ab["diff"].high == pytest.approx(-ba["diff"].low, abs=1e-9 * (1 + abs(ab["diff"].high)))
    # swapping the runs inverts the ratio's point estimate; the interval stays around it
    assert ab["ratio"].estimate * ba["ratio"].estimate == pytest.approx(1.0, rel=1e-12)
    assert ab["ratio"].low <= ab["ratio"].high
    same = paired_ppl(a, a, tok, seed=seed, resamples=2000)["ratio"]
    assert same.low == same.high == 1.0 and not same.resolved
