"""pruning.methods.besa.core: BESA's pure tensor functions against slow, obvious references."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pruning.methods.besa.core as core


def test_candidates_and_counts_are_exact():
    c = core.candidates()
    assert c.shape == (101,) and c[0] == 1.0 and c[-1] == 0.0 and c[50] == 0.5
    # floor(C c_d) with exact fractions, including the d where C * c_d in floats falls below the integer
    for C in (1, 7, 100, 128, 576, 1536):
        want = [math.floor(Fraction(C) * Fraction(100 - d, 100)) for d in range(101)]
        assert core.candidate_counts(C).tolist() == want


def test_sort_ranks_hand_computed():
    score = torch.tensor([[3.0, 1.0, 2.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    # stable ascending: ties keep column order
    assert core.sort_ranks(score).tolist() == [[3, 0, 2, 1], [0, 1, 2, 3]]
    keep = core.hard_keep(core.sort_ranks(score), torch.tensor([2, 1]))
    assert keep.tolist() == [[True, False, True, False], [False, True, True, True]]


def _brute_force(score, p, s, C):
    """Per-row Python loop: the specification of the hard and the soft mask."""
    R = score.shape[0]
    D = p.shape[1]
    hard = torch.ones(R, C, dtype=torch.bool)
    soft = torch.zeros(R, C, dtype=torch.float64)
    for r in range(R):
        order = sorted(range(C), key=lambda c: (float(score[r, c]), c))
        k = math.floor(float(s[r]) * C)
        for j, c in enumerate(order):
            if j < k:
                hard[r, c] = False
            pruned = sum(float(p[r, d]) for d in range(D) if j < math.floor(Fraction(C) * Fraction(D - 1 - d, D - 1)))
            soft[r, c] = 1.0 - pruned
    return hard, soft


@settings(max_examples=30, deadline=None)
@given(R=st.integers(1, 5), C=st.integers(1, 40), D=st.sampled_from([2, 5, 11, 101]), ties=st.booleans(), smoothing=st.booleans(), seed=st.integers(0, 2**16))
def test_mask_generator_matches_per_row_loop(R, C, D, ties, smoothing, seed):
    gen = torch.Generator().manual_seed(seed)
    score = torch.randn(R, C, generator=gen).abs()
    if ties:
        score = torch.round(score * 2) / 2  # many equal scores: the stable order matters
    logits = torch.randn(R, D, generator=gen) * 3
    p = core.coefficients(logits, smoothing)
    s = core.expected_sparsity(p, core.candidates(D))
    rank = core.sort_ranks(score)
    hard = core.hard_keep(rank, core.row_counts(s, C, R))
    soft = core.soft_keep(p, core.soft_index(rank, core.candidate_counts(C, D)))
    want_hard, want_soft = _brute_force(score, p, s, C)
    assert torch.equal(hard, want_hard)
    assert torch.allclose(soft.double(), want_soft, atol=1e-5)


def test_layer_granularity_broadcasts_one_logit_vector():
    gen = torch.Generator().manual_seed(0)
    score = torch.rand(6, 20, generator=gen)
    p = core.coefficients(torch.randn(1, 101, generator=gen))
    rank = core.sort_ranks(score)
    soft = core.soft_keep(p, core.soft_index(rank, core.candidate_counts(20)))
    p_rows = p.expand(6, -1)
    assert torch.equal(soft, core.soft_keep(p_rows, core.soft_index(rank, core.candidate_counts(20))))
    k = core.row_counts(core.expected_sparsity(p, core.candidates()), 20, 6)
    assert k.shape == (6,) and len(set(k.tolist())) == 1


def test_ste_forward_is_hard_and_gradient_is_soft():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 101, generator=gen, requires_grad=True)
    score = torch.rand(4, 30, generator=gen)
    rank = core.sort_ranks(score)
    p = core.coefficients(logits)
    s = core.expected_sparsity(p, core.candidates())
    hard = core.hard_keep(rank, core.row_counts(s, 30, 4))
    soft = core.soft_keep(p, core.soft_index(rank, core.candidate_counts(30)))
    mask = core.ste_mask(hard, soft)
    assert torch.equal(mask, hard.float())  # forward value is exactly the hard 0/1 mask
    W = torch.randn(4, 30, generator=gen)
    (W * mask).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def _extreme_expected(smoothing: bool) -> tuple[float, float]:
    """Min and max expected row sparsity reachable: push logits to +-L on a prefix/suffix of candidates."""
    c = core.candidates()
    lo, hi = 1.0, 0.0
    for L in (30.0,):
        for t in range(1, 101):
            for sign in (1, -1):
                logits = torch.full((1, 101), -L * sign)
                logits[0, :t] = L * sign  # mass towards high (sign=1) or low candidates
                s = float(core.expected_sparsity(core.coefficients(logits, smoothing), c))
                lo, hi = min(lo, s), max(hi, s)
    return lo, hi


def test_expected_sparsity_range_with_and_without_smoothing():
    lo, hi = _extreme_expected(smoothing=True)
    assert lo == pytest.approx(0.376, abs=0.002) and hi == pytest.approx(0.624, abs=0.002)
    lo2, hi2 = _extreme_expected(smoothing=False)
    assert lo2 < 0.01 and hi2 > 0.99
    z = core.expected_sparsity(core.coefficients(torch.zeros(1, 101)), core.candidates())
    assert float(z) == pytest.approx(0.5, abs=1e-6)  # zero init sits at the 50% target


def test_reconstruction_loss_hand_computed():
    target = torch.tensor([[[1.0, 2.0], [1.0, 0.0]]])  # (1, T=2, H=2): channel norms^2 = 2, 4
    out = torch.tensor([[[0.0, 2.0], [1.0, 1.0]]])
    # channel 0: 1/2, channel 1: 1/4 -> (0.5 + 0.25) / 2
    assert float(core.reconstruction_loss(out, target)) == pytest.approx(0.375)
    assert float(core.sparsity_penalty(torch.tensor(0.6), 0.5, 5.0)) == pytest.approx(5 * 0.04)


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 12), C=st.integers(1, 50), frac=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_exact_counts_hit_total_and_keep_order(rows, C, frac, seed):
    gen = torch.Generator().manual_seed(seed)
    s = torch.rand(rows, generator=gen)
    cap = torch.full((rows,), C)
    total = round(frac * rows * C)
    k = core.exact_counts(s * C, cap, total)
    assert int(k.sum()) == total and (k >= 0).all() and (k <= C).all()
    # monotone: a row that wanted more never gets fewer (up to the one unit of rounding)
    order = torch.argsort(s)
    ks = k[order].tolist()
    assert all(b >= a - 1 for a, b in zip(ks, ks[1:]))


def test_exact_counts_hand_computed():
    # desired 1, 3 -> total 8 with C=5: proportional 2, 6 -> 6 capped at 5, rest 3 on row 0
    assert core.exact_counts(torch.tensor([1.0, 3.0]), torch.tensor([5, 5]), 8).tolist() == [3, 5]
    assert core.exact_counts(torch.tensor([1.0, 1.0, 1.0]), torch.tensor([4, 4, 4]), 4).tolist() == [2, 1, 1]
    assert core.exact_counts(torch.tensor([0.0, 2.0]), torch.tensor([4, 4]), 6).tolist() == [2, 4]


# --- fast paths: the same numbers as the obvious code, bit for bit --------------------------------


@settings(max_examples=60, deadline=None)
@given(R=st.integers(1, 6), C=st.integers(1, 50), kind=st.sampled_from(["rand", "ties", "signed", "special"]), seed=st.integers(0, 2**16))
def test_stable_order_equals_torch_stable_sort(R, C, kind, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(R, C, generator=gen)
    if kind == "rand":
        x = x.abs()
    elif kind == "ties":
        x = torch.round(x.abs() * 2) / 2  # many equal scores, zeros among them
    elif kind == "special":  # -0.0 ties +0.0; inf < NaN (either sign bit) last, NaNs tie among themselves
        pool = torch.tensor([0.0, -0.0, 1.0, -1.0, float("inf"), -float("inf"), float("nan"), -float("nan"), 1e-45])
        x = pool[torch.randint(0, len(pool), (R, C), generator=gen)]
    assert torch.equal(core.stable_order(x), torch.sort(x, dim=1, stable=True).indices)


def _reference_masked_weight(W, hard, p, index):
    return W * core.ste_mask(hard, core.soft_keep(p, index))


@settings(max_examples=40, deadline=None)
@given(
    R=st.integers(1, 5),
    C=st.integers(1, 40),
    D=st.sampled_from([2, 11, 101]),
    rows1=st.booleans(),
    smoothing=st.booleans(),
    scale=st.sampled_from([1.0, 30.0]),
    seed=st.integers(0, 2**16),
    chunk=st.sampled_from([1, 7, 1 << 18]),
)
def test_masked_weight_is_bit_identical_to_ste_composition(R, C, D, rows1, smoothing, scale, seed, chunk):
    """Value and gradient of the fused STE op equal ``W * ste_mask(hard, soft_keep(p, index))`` exactly,
    also where float noise pushes the cumulative coefficients past 1 (no smoothing, extreme logits), and
    whatever the backward's row chunk (1 entry = one row per chunk, 7, the default)."""
    old_chunk = core.ROW_CHUNK["cpu"]
    core.ROW_CHUNK["cpu"] = chunk
    try:
        _check_masked_weight(R, C, D, rows1, smoothing, scale, seed)
    finally:
        core.ROW_CHUNK["cpu"] = old_chunk


def _check_masked_weight(R, C, D, rows1, smoothing, scale, seed):
    gen = torch.Generator().manual_seed(seed)
    score = torch.rand(R, C, generator=gen)
    rank = core.sort_ranks(score)
    index = core.soft_index(rank, core.candidate_counts(C, D))
    W = torch.randn(R, C, generator=gen)
    G = torch.randn(R, C, generator=gen)  # an arbitrary upstream gradient
    base = torch.randn(1 if rows1 else R, D, generator=gen) * scale
    out = []
    # the method's way: fused op on the compact rank and index; the reference on plain int64
    for fn, rk, ix in ((_reference_masked_weight, rank, index), (core.masked_weight, core.compact(rank, C), core.compact(index, D))):
        logits = base.clone().requires_grad_(True)
        p = core.coefficients(logits, smoothing)
        s = core.expected_sparsity(p, core.candidates(D))
        hard = core.hard_keep(rk, core.row_counts(s, C, R))
        y = fn(W, hard, p, ix)
        (y * G).sum().backward()
        out.append((y.detach(), logits.grad))
    assert torch.equal(out[0][0], out[1][0])
    assert torch.equal(out[0][1], out[1][1])


def test_masked_weight_fallback_when_cumulative_coefficients_exceed_one():
    """A soft value just below 0 (cp = 1 + 2^-23) is outside the range the fast path's proof covers: the op
    takes the literal formula, and the value still equals the reference."""
    cp_row = torch.tensor([[0.0, 0.5, 1.0 + 2**-23]])
    p = torch.diff(cp_row, dim=1)  # [0.5, 0.5 + 2^-23]: cumsum gives cp_row back
    index = torch.tensor([[2, 1, 0]])
    hard = torch.tensor([[True, True, False]])
    W = torch.tensor([[1.0, 2.0, 3.0]])
    assert torch.equal(core.masked_weight(W, hard, p, index), _reference_masked_weight(W, hard, p, index))


def test_compact_picks_the_narrowest_dtype_and_keeps_values():
    t = torch.tensor([[0, 3, 255]])
    assert core.compact(t, 255).dtype == torch.uint8 and core.compact(t, 256).dtype == torch.int16
    assert core.compact(t, 32767).dtype == torch.int16 and core.compact(t, 32768).dtype == torch.int32
    assert core.compact(t, 2**31).dtype == torch.int64
    for top in (255, 256, 32768, 2**31):
        assert core.compact(t, top).long().tolist() == [[0, 3, 255]]


@pytest.mark.parametrize("C", [7, 255, 256, 300])
def test_hard_keep_on_compact_rank_equals_int64_including_prune_all(C):
    """k_r ranges over [0, C] (C = prune the whole row): the compact rank's dtype must hold C itself."""
    gen = torch.Generator().manual_seed(C)
    rank = core.sort_ranks(torch.rand(4, C, generator=gen))
    k = torch.tensor([0, 1, C - 1, C])
    assert torch.equal(core.hard_keep(core.compact(rank, C), k), core.hard_keep(rank, k))
    assert not core.hard_keep(core.compact(rank, C), k)[3].any() and core.hard_keep(core.compact(rank, C), k)[0].all()


@settings(max_examples=30, deadline=None)
@given(R=st.integers(1, 9), C=st.integers(1, 40), D=st.sampled_from([2, 11, 101]), chunk=st.integers(1, 200), ties=st.booleans(), seed=st.integers(0, 2**16))
def test_layer_ranking_equals_the_unchunked_composition(R, C, D, chunk, ties, seed):
    gen = torch.Generator().manual_seed(seed)
    W = torch.randn(R, C, generator=gen)
    stat = torch.rand(C, generator=gen)
    if ties:
        W = torch.round(W * 2) / 2
        stat = torch.ones(C)
    rank, index, index_max = core.layer_ranking(W, stat, D, chunk=chunk)
    want_rank = core.sort_ranks(core.wanda_score(W, stat))
    want_index = core.soft_index(want_rank, core.candidate_counts(C, D))
    assert rank.dtype == core.compact(want_rank, C).dtype and index.dtype == core.compact(want_index, D).dtype
    assert torch.equal(rank.long(), want_rank) and torch.equal(index.long(), want_index)
    assert index_max == int(want_index.max())


def test_row_chunk_per_device():
    assert core.row_chunk(576, torch.device("cpu")) == (1 << 18) // 576
    assert core.row_chunk(4096, torch.device("cuda")) == (1 << 24) // 4096  # only the device type is read
    assert core.row_chunk(1 << 20, "cpu") == 1 and core.row_chunk(0, "cpu") == 1 << 18
