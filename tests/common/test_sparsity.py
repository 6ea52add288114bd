"""besa_common.sparsity: the one N:M parser and the three sparsity ranges (hand-computed cases and properties)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from besa_common.errors import UserError
from besa_common.sparsity import (
    PATTERN_CONVENTION,
    check_layer_target,
    check_measured,
    check_target,
    format_nm,
    nm_sparsity,
    parse_nm,
    parse_pattern,
    pattern_label,
    pattern_sparsity,
)


# ---------------------------------------------------------------- N:M, hand-computed
@pytest.mark.parametrize("text, nm", [("2:4", (2, 4)), ("1:4", (1, 4)), ("4:8", (4, 8)), (" 3 : 16 ", (3, 16)), ("1:2", (1, 2))])
def test_parse_nm_reads_n_kept_of_m(text, nm):
    assert parse_nm(text) == nm


@pytest.mark.parametrize("text", ["4:2", "2:2", "0:4", "2-4", "2:4:8", "", "a:b", "-1:4", "2:", ":4", "2.0:4", "unstructured"])
def test_parse_nm_refuses_with_one_informative_line(text):
    with pytest.raises(UserError) as e:
        parse_nm(text, "--pattern")
    msg = str(e.value)
    assert msg.startswith("--pattern: expected") and "\n" not in msg
    assert "0 < N < M" in msg and "KEPT" in msg and "N:M" in msg and repr(text) in msg


def test_parse_nm_refuses_what_is_not_a_string():
    with pytest.raises(UserError, match="got 24"):
        parse_nm(24, "x")  # type: ignore[arg-type]


def test_parse_pattern_allows_unstructured_and_names_it_on_error():
    assert parse_pattern(None) is None
    assert parse_pattern("unstructured") is None
    assert parse_pattern("2:4") == (2, 4)
    with pytest.raises(UserError, match='expected "unstructured" or "n:m"'):
        parse_pattern("4:2", "patterns[0]")


@pytest.mark.parametrize("text, s", [("2:4", 0.5), ("1:4", 0.75), ("3:4", 0.25), ("4:8", 0.5), ("1:8", 0.875)])
def test_pattern_sparsity_is_one_minus_n_over_m(text, s):
    assert pattern_sparsity(text) == s
    assert nm_sparsity(*parse_nm(text)) == s


@given(st.integers(1, 4096), st.integers(1, 4096))
def test_parse_nm_accepts_exactly_0_lt_n_lt_m_and_round_trips(n, m):
    text = format_nm(n, m)
    if n < m:
        assert parse_nm(text) == (n, m)
        assert 0.0 < pattern_sparsity(text) < 1.0  # every valid pattern is a valid pruning target
        assert check_target(pattern_sparsity(text)) == 1.0 - n / m
    else:
        with pytest.raises(UserError):
            parse_nm(text)


@given(st.text(max_size=12))
def test_parse_nm_never_fails_with_anything_but_a_user_error(text):
    try:
        n, m = parse_nm(text)
    except UserError as exc:
        assert "\n" not in str(exc)
    else:
        assert 0 < n < m and [int(x) for x in text.split(":")] == [n, m]


# ---------------------------------------------------------------- the three ranges
@pytest.mark.parametrize("v", [0.5, 0.01, 0.999, 1e-9])
def test_target_inside_open_interval(v):
    assert check_target(v) == v


@pytest.mark.parametrize("v", [0.0, 1.0, -0.1, 1.5, math.inf, -math.inf])
def test_target_outside_is_refused_naming_the_range(v):
    with pytest.raises(UserError, match=r"--sparsity must be in \(0, 1\)"):
        check_target(v, "--sparsity")


@pytest.mark.parametrize("v", [math.nan, "0.5", None, True])
def test_ranges_refuse_what_is_not_a_number(v):
    for check in (check_target, check_layer_target, check_measured):
        with pytest.raises(UserError, match="expected a number"):
            check(v, "x")


def test_layer_target_allows_a_dense_layer_but_not_an_empty_one():
    assert check_layer_target(0.0) == 0.0
    assert check_layer_target(0.7) == 0.7
    for v in (1.0, -0.01, 2):
        with pytest.raises(UserError, match=r"expected a fraction in \[0, 1\)"):
            check_layer_target(v, "layer 'a'")


def test_measured_includes_both_ends():
    assert check_measured(0.0) == 0.0 and check_measured(1.0) == 1.0 and check_measured(1) == 1.0
    for v in (-0.01, 1.01):
        with pytest.raises(UserError, match=r"must be in \[0, 1\]"):
            check_measured(v)


@given(st.floats(allow_nan=False))
def test_the_ranges_nest(v):
    """target (0, 1)  ⊂  layer target [0, 1)  ⊂  measured [0, 1]."""

    def ok(check):
        try:
            check(v)
            return True
        except UserError:
            return False

    t, lay, meas = ok(check_target), ok(check_layer_target), ok(check_measured)
    assert t == (0.0 < v < 1.0) and lay == (0.0 <= v < 1.0) and meas == (0.0 <= v <= 1.0)
    assert (not t or lay) and (not lay or meas)


# ---------------------------------------------------------------- recorded patterns (reports)
def test_pattern_label_passes_new_manifests_through():
    assert PATTERN_CONVENTION == "n_kept_of_m"
    assert pattern_label("1:4", PATTERN_CONVENTION) == "1:4"
    assert pattern_label(None) == "unstructured" and pattern_label("") == "unstructured" and pattern_label("none") == "unstructured"
    assert pattern_label([2, 4]) == "2:4" and pattern_label((1, 8)) == "1:8"
    assert pattern_label("weird") == "weird"  # shown as written, never a failure


def test_pattern_label_converts_version_1_manifests():
    assert pattern_label("1:4", None) == "3:4"  # version 1: 1 of 4 PRUNED = 3 of 4 kept
    assert pattern_label([1, 4], None) == "3:4"
    assert pattern_label("2:4", None) == "2:4"
    assert pattern_label("unstructured", None) == "unstructured"


@given(st.integers(1, 64), st.integers(2, 64))
def test_pattern_label_conversion_keeps_the_sparsity(pruned, m):
    """Version 1's "p:m" pruned p of m: the converted label keeps m - p, i.e. the same sparsity p/m."""
    if pruned >= m:
        return
    kept = pattern_label(format_nm(pruned, m), None)
    assert pattern_sparsity(kept) == pytest.approx(pruned / m)
