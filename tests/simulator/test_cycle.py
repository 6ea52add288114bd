"""cycle / dense / nm modes: pencil cases and the bounds and invariants of spec section 4."""

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from simulator import engine as eng
from simulator import reference as ref
from simulator import workload as wl
from simulator.hardware import load_hardware

from .helpers import small_hw

ENGINE = "cpp" if eng.have_core() else "python"

# 2 x 4 mask of the pencil cases below
KEEP = np.array([[1, 1, 1, 0],
                 [1, 0, 0, 1]], bool)
TINY = dict(lines=2, macs_per_line=2, tile_m=2, tile_k=4, tile_n=1, pipeline_fill=0, tau=0.5,
            split="proportional", assign="round_robin", dram_bytes_per_cycle=1.0)


def test_pencil_compute_only():
    hw = small_hw(memory=False, **TINY)
    r = ref.cycle_layer(KEEP, 1, hw)
    # column counts 2,1,1,1 > tau*M = 1 -> column 0 dense: G = 1; sparse rows have 2 and 1 kept.
    # proportional: floor(2*2*1/(2+3)) = 0 -> clamped to 1 line each.
    # dense engine: ceil(2/1)*1*ceil(1/2) = 2; sparse: costs ceil(2/2) = 1, ceil(1/2) = 1 on one line = 2.
    assert (r["G"], r["lines_dense"], r["lines_sparse"]) == (1, 1, 1)
    assert (r["dense_engine_cycles"], r["sparse_engine_cycles"], r["cycles"]) == (2, 2, 2)
    assert r["lb_ideal"] == 2 and r["lb_split"] == 2  # ceil(5/4), ceil((2*1 + 3)/4)
    assert ref.cycle_layer(KEEP, 3, hw)["cycles"] == 6  # three 1-token tiles
    assert ref.dense_layer(2, 4, 1, hw)["cycles"] == 2  # ceil(2/2)*1*ceil(4/2)


@pytest.mark.parametrize("fmt, cycles, index_bits", [
    # weights 2*1*8 (dense column) + 3*8 (sparse values) = 40 bits, acts 4*8 = 32, outputs 2*8 = 16
    ("bitmap", 12, 6),   # + 2 rows x 3 sparse columns = 6 bits -> 94 bits = 11.75 bytes at 1 B/cycle
    ("csr", 14, 20),     # + 3 values x 4 bits + 2 row pointers x 4 bits = 20 -> 108 bits = 13.5
    ("rle", 13, 4),      # row 1 = 0 0 1 over the sparse columns: gap 2 >= 2^1 -> 1 pad entry;
                         # 4 entries x 1 bit + 4 x 8 value bits -> 48 + 4 + 32 + 16 = 100 bits = 12.5
])
def test_pencil_memory_and_index_formats(fmt, cycles, index_bits):
    hw = small_hw(memory=True, index_format=fmt, index_bits=4, rowptr_bits=4, rle_bits=1, **TINY)
    r = ref.cycle_layer(KEEP, 1, hw)
    assert r["cycles"] == cycles and r["bits_index"] == index_bits
    assert r["bound"] == "memory" and r["stall_cycles"] == cycles - 2
    d = ref.dense_layer(2, 4, 1, hw)
    assert d["cycles"] == 14  # 2*4*8 + 32 + 16 = 112 bits = 14 bytes


def test_pencil_lpt_vs_round_robin():
    # one row tile of 4 rows with sparse costs 3, 3, 1, 1 (m = 1) on 2 lines:
    # round robin: lines get rows {0, 2} and {1, 3} -> 4 and 4;  costs 3, 1, 3, 1 -> {0,2} = 6, {1,3} = 2
    assert ref.max_line_load([3, 1, 3, 1], 2, "round_robin") == 6
    assert ref.max_line_load([3, 1, 3, 1], 2, "lpt") == 4
    if eng.have_core():
        from simulator import _core

        assert _core.max_line_load(np.array([3, 1, 3, 1]), 2, False) == 6
        assert _core.max_line_load(np.array([3, 1, 3, 1]), 2, True) == 4
    from simulator.stats import line_loads

    assert line_loads(np.array([3, 1, 3, 1]), 2, "lpt").max() == 4


def _random_hw(data):
    fmt = data.draw(st.sampled_from(["bitmap", "csr", "rle"]))
    return small_hw(
        lines=data.draw(st.integers(1, 8)), macs_per_line=data.draw(st.integers(1, 8)),
        tile_m=data.draw(st.integers(1, 16)), tile_k=data.draw(st.integers(1, 32)), tile_n=data.draw(st.integers(1, 16)),
        pipeline_fill=data.draw(st.integers(0, 6)), tau=data.draw(st.sampled_from([0.0, 0.3, 0.5, 0.9])),
        split=data.draw(st.sampled_from(["optimal", "proportional"])),
        assign=data.draw(st.sampled_from(["lpt", "round_robin"])), index_format=fmt,
        memory=data.draw(st.booleans()), dram_bytes_per_cycle=data.draw(st.sampled_from([0.5, 3.0, 64.0])),
        gather_factor=data.draw(st.sampled_from([1.0, 1.25])),
    )


masks = arrays(bool, st.tuples(st.integers(1, 24), st.integers(1, 40)))


@settings(max_examples=150, deadline=None)
@given(masks, st.integers(1, 40), st.data())
def test_cpp_equals_reference(keep, tokens, data):
    """The C++ engine (on numba statistics) returns exactly the reference's integers in every mode."""
    hw = _random_hw(data)
    from besa_common.masks import pack_keep

    M, K = keep.shape
    p = pack_keep(keep)
    for mode in ("cycle", "dense", "nm"):
        fast = eng.evaluate(p, M, K, mode, [tokens], hw, ENGINE)[0]
        spec = eng.evaluate(p, M, K, mode, [tokens], hw, "reference")[0]
        assert fast == spec, mode


@settings(max_examples=100, deadline=None)
@given(masks, st.integers(1, 40), st.data())
def test_bounds(keep, tokens, data):
    hw = _random_hw(data)
    r = ref.cycle_layer(keep, tokens, hw)
    assert r["lb_ideal"] <= r["lb_split"] <= r["cycles"]
    assert r["stall_cycles"] <= r["cycles"]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 24), st.integers(1, 40), st.integers(1, 40), st.data())
def test_all_kept_equals_dense_baseline(rows, cols, tokens, data):
    hw = _random_hw(data)
    keep = np.ones((rows, cols), bool)
    r = ref.cycle_layer(keep, tokens, hw)
    d = ref.dense_layer(rows, cols, tokens, hw)
    assert r["cycles"] == d["cycles"]
    assert r["bits_index"] == 0 and r["bits_weights"] == d["bits_weights"]


@settings(max_examples=100, deadline=None)
@given(masks, st.integers(1, 20), st.data())
def test_monotone_in_kept_weights(keep, tokens, data):
    """Adding a kept weight never lowers the cycles (optimal split, round-robin rows, the column stays
    on its side of tau: LPT and a column flipping into the dense engine are heuristics that can)."""
    hw = _random_hw(data)
    hw = load_hardware("vitcod", dict(hw.as_dict(), split="optimal", assign="round_robin"))
    zeros = np.argwhere(~keep)
    assume(len(zeros) > 0)
    i, j = zeros[data.draw(st.integers(0, len(zeros) - 1))]
    more = keep.copy()
    more[i, j] = True
    M = keep.shape[0]
    assume((keep[:, j].sum() > hw.tau * M) == (more[:, j].sum() > hw.tau * M))
    assert ref.cycle_layer(more, tokens, hw)["cycles"] >= ref.cycle_layer(keep, tokens, hw)["cycles"]


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 10**6), st.integers(1, 10**6), st.integers(2, 64), st.integers(1, 64), st.integers(1, 4096))
def test_proportional_split_factor_bound(wd, ws, lines, height, tokens):
    """Spec 4: the proportional split's compute costs at most (1 + 1/min(Ld, Ls)) x ceil(W*N/P) (+1)."""
    Ld, Ls = ref.corrected_split(1, ws, wd, lines)  # rows*G = wd with G = 1
    c = ref.split_compute_cycles(wd, ws, Ld, Ls, height, tokens)
    ideal = ref.cdiv((wd + ws) * tokens, lines * height)
    assert c <= (1 + 1 / min(Ld, Ls)) * ideal + 1


def _one(spec, hw, mode, tokens, seed=0):
    layer = wl.synthetic(spec, seed)[0]
    return eng.evaluate(layer.load(), layer.rows, layer.cols, mode, tokens, hw, ENGINE)


def test_two_four_is_exactly_twice_dense_when_compute_bound():
    hw = load_hardware("vitcod")
    d, nm = (_one("4096x4096:nm=2:4", hw, m, [2048])[0] for m in ("dense", "nm"))
    assert nm["nm_n"] == 2
    assert d["bound"] == "compute" and nm["bound"] == "compute"
    assert d["cycles"] == 2 * nm["cycles"]
    # and a mask that is not 2:4 is reported at its smallest covering n:m
    r = _one("64x64:sparsity=0.5", hw, "nm", [1])[0]
    assert r["nm_n"] > 2


def test_decode_is_memory_bound_on_vitcod():
    hw = load_hardware("vitcod")
    for mode in ("cycle", "dense", "nm"):
        assert _one("4096x4096:sparsity=0.5", hw, mode, [1])[0]["bound"] == "memory"
    # the ridge point: P*b_w/B = 512/165 ~ 3 tokens; by 64 tokens the dense engine is compute-bound
    assert _one("4096x4096:dense", hw, "dense", [64])[0]["bound"] == "compute"


def test_index_formats_bound_memory_side_speedup():
    """Spec 4: at 50% density, int8, everything in the sparse engine: bitmap ~1.6x, 16-bit CSR ~0.67x."""
    out = {}
    for fmt in ("bitmap", "csr"):
        hw = load_hardware("vitcod", {"tau": 0.99, "index_format": fmt, "index_bits": 16})
        r = _one("4096x4096:sparsity=0.5", hw, "cycle", [1])[0]
        assert r["bound"] == "memory"
        out[fmt] = r["dense_cycles"] / r["cycles"]
    assert 1.5 < out["bitmap"] < 1.62
    assert 0.64 < out["csr"] < 0.68


def test_pencil_nm_engine():
    # 2 x 8 mask, 2 kept in every group of 4; 2 lines x 2 MACs, one 2 x 8 tile, 1 token
    keep = np.array([[1, 1, 0, 0, 0, 1, 0, 1],
                     [0, 1, 1, 0, 1, 0, 1, 0]], bool)
    hw = small_hw(**dict(TINY, tile_k=8, memory=False))
    assert ref.nm_group_max(keep, 4) == 2
    # dense chunk: ceil(2/2)*1*ceil(8/2) = 4 cycles; 2:4 engine: ceil(4*2/4) = 2
    assert ref.dense_layer(2, 8, 1, hw)["cycles"] == 4
    assert ref.nm_layer(2, 8, 1, 2, hw)["cycles"] == 2
    hw = small_hw(**dict(TINY, tile_k=8, memory=True))
    # n:m bits: 2 rows x 2 groups x 2 values x (8 + 2 metadata) = 80, acts 8*8 = 64, outputs 16 -> 160 = 20 B
    r = ref.nm_layer(2, 8, 1, 2, hw)
    assert (r["cycles"], r["bits_index"], r["bound"]) == (20, 16, "memory")
    assert ref.dense_layer(2, 8, 1, hw)["cycles"] == 26  # 128 + 64 + 16 bits = 26 B
    # a group with 3 kept: covering 3:4 -> ceil(4*3/4) = 3 compute cycles
    assert ref.nm_layer(2, 8, 1, 3, small_hw(**dict(TINY, tile_k=8, memory=False)))["cycles"] == 3
