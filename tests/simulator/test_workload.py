"""Workloads and mask statistics: synthetic generators, masks files, C++ / numba statistics vs numpy."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from besa_common.errors import UserError
from besa_common.masks import pack_keep, write_masks
from simulator import reference as ref
from simulator import stats
from simulator import workload as wl
from simulator.cost.partition import max_line_load
from simulator.hardware import GATHER_SCALE

from .helpers import small_hw

BACKENDS = ["core", "numba"] if stats._core is not None else ["numba"]


def _check_statistics(keep, m, bits, sel):
    p = pack_keep(keep)
    rows, cols = keep.shape
    assert np.array_equal(stats.col_counts(p, cols), keep.sum(0))
    counts, row_total = stats.mask_counts(p, cols)
    assert np.array_equal(counts, keep.sum(0)) and np.array_equal(row_total, keep.sum(1))
    assert np.array_equal(stats.row_counts(p, sel), keep[:, sel].sum(1))
    assert np.array_equal(stats.row_counts(p, sel, row_total), keep[:, sel].sum(1))
    assert np.array_equal(stats.row_counts(p), keep.sum(1))
    assert stats.nm_group_max(p, cols, m) == ref.nm_group_max(keep, m)
    pads = stats.rle_pads(p, cols, sel, bits)
    assert list(pads) == [ref.rle_pads(keep[i, sel], bits) for i in range(rows)]
    for mm, banks in ((m, 3), (8, 32), (2 * m, m)):
        hw = small_hw(macs_per_line=mm, banks=banks, gather_factor=0.0)
        assert stats.bank_gather_scaled(p, cols, sel, mm, banks, GATHER_SCALE) == ref.bank_gather_scaled(keep, sel, hw)


@settings(max_examples=80, deadline=None)
@given(arrays(bool, st.tuples(st.integers(1, 300), st.integers(1, 70))), st.integers(1, 8), st.one_of(st.integers(1, 5), st.integers(60, 64)))
def test_statistics_match_numpy(keep, m, bits):
    for use_core in BACKENDS:
        stats.USE_CORE = use_core == "core"
        try:
            _check_statistics(keep, m, bits, np.arange(keep.shape[1]) % 3 != 0)
        finally:
            stats.USE_CORE = True


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 40), st.integers(1, 200), st.floats(0, 1), st.floats(0, 1), st.integers(0, 2**32), st.sampled_from([1, 2, 3, 4, 5, 8, 16]), st.integers(0, 7)
)
def test_statistics_wide_rows_and_sparse_selections(rows, cols, density, sel_density, seed, m, bits):
    """Rows longer than a 64-bit word, runs longer than a word, selections of any density."""
    rng = np.random.default_rng(seed)
    keep = rng.random((rows, cols)) < density**2
    sel = rng.random(cols) < sel_density
    for use_core in BACKENDS:
        stats.USE_CORE = use_core == "core"
        try:
            _check_statistics(keep, m, bits, sel)
        finally:
            stats.USE_CORE = True


@pytest.mark.skipif(stats._core is None, reason="needs the C++ core")
@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 12), min_size=0, max_size=300), st.integers(1, 600))
def test_cpp_lpt_matches_reference_with_many_lines(costs, lines):
    """The C++ LPT moves rows of equal cost in bulk (the multiset of loads): same makespan as the
    reference heap, also with hundreds of lines (gpu-h100 has 528)."""
    c = np.array(costs, np.int64)
    assert stats._core.max_line_load(c, lines, True) == max_line_load(costs, lines, "lpt")
    assert stats._core.max_line_load(c, lines, False) == max_line_load(costs, lines, "round_robin")


def test_col_counts_survive_more_than_255_rows():
    keep = np.ones((1000, 9), bool)
    assert list(stats.col_counts(pack_keep(keep), 9)) == [1000] * 9


def test_row_counts_survive_the_widest_rows():
    """A row of 2^20 kept columns (MAX_DIM): the core's per-row byte sums are folded before they overflow."""
    keep = np.ones((3, 1 << 20), bool)
    counts, rows = stats.mask_counts(pack_keep(keep), 1 << 20)
    assert (counts == 3).all() and list(rows) == [1 << 20] * 3


def test_synthetic_shapes_and_determinism():
    layers = wl.synthetic("llama-7b:sparsity=0.5", 0)
    assert len(layers) == 32 * 7
    shapes = {(l.proj, l.rows, l.cols) for l in layers}
    assert ("gate_proj", 11008, 4096) in shapes and ("down_proj", 4096, 11008) in shapes
    l70 = {(l.proj, l.rows, l.cols) for l in wl.synthetic("llama-70b[1]", 0)}
    assert ("k_proj", 1024, 8192) in l70
    assert len(wl.synthetic("smollm2-135m", 0)) == 30 * 7
    a = wl.synthetic("llama-7b[1]:sparsity=0.7", 7)[1].load()
    b = wl.synthetic("llama-7b[1]:sparsity=0.7", 7)[1].load()
    c = wl.synthetic("llama-7b[1]:sparsity=0.7", 8)[1].load()
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("sparsity", [0.0, 0.25, 0.5, 0.7, 1.0])
def test_unstructured_sparsity(sparsity):
    layer = wl.synthetic(f"512x1000:sparsity={sparsity}", 1)[0]
    keep = layer.keep()
    assert abs((1 - keep.mean()) - sparsity) < 0.01
    # pad bits are zero
    assert not np.unpackbits(layer.load(), axis=1, bitorder="little")[:, 1000:].any()


@pytest.mark.parametrize("spec, n, m", [("64x64:nm=2:4", 2, 4), ("16x30:nm=1:3", 1, 3), ("8x64:nm=4:8", 4, 8)])
def test_nm_masks_are_exact(spec, n, m):
    keep = wl.synthetic(spec, 0)[0].keep()
    cols = keep.shape[1]
    for g0 in range(0, cols - cols % m, m):
        assert (keep[:, g0 : g0 + m].sum(1) == n).all()


def test_skewed_sigma_1_has_dense_columns():
    keep = wl.synthetic("512x512:skewed=0.5/1", 0)[0].keep()
    frac = keep.mean(0)
    assert keep.mean() == 0.5  # exact, despite the clipping of dense columns
    assert frac.max() > 0.95 and frac.min() < 0.2


@pytest.mark.parametrize("spec", ["gpt-9:sparsity=0.5", "llama-7b:sparse=0.5", "llama-7b:sparsity=2", "llama-7b:nm=5:4", "llama-7b[99]", "0x5"])
def test_bad_synthetic_specs(spec):
    with pytest.raises(UserError):
        wl.synthetic(spec, 0)


@pytest.mark.parametrize("old, new", [("unstructured=0.3", "sparsity=0.7"), ("random=0.5", "sparsity=0.5")])
def test_old_density_spelling_is_refused_naming_the_new_one(old, new):
    with pytest.raises(UserError, match=new) as e:
        wl.synthetic(f"64x64:{old}", 0)
    assert "\n" not in str(e.value)


def test_nm_1_of_4_is_75_percent_sparse():
    keep = wl.synthetic("64x64:nm=1:4", 0)[0].keep()  # N:M = N kept of M
    assert keep.mean() == 0.25


def _masks_file(tmp_path):
    rng = np.random.default_rng(0)
    keep = {
        "model.layers.0.self_attn.q_proj": rng.random((16, 24)) < 0.5,
        "model.layers.0.mlp.down_proj": rng.random((16, 40)) < 0.5,
        "model.layers.1.self_attn.q_proj": rng.random((16, 24)) < 0.5,
    }
    path = tmp_path / "masks.safetensors"
    write_masks(path, keep, {"method": "test"})
    return path, keep


def test_from_masks_order_and_content(tmp_path):
    path, keep = _masks_file(tmp_path)
    layers = wl.from_masks(path)
    assert [l.name for l in layers] == ["model.layers.0.self_attn.q_proj", "model.layers.0.mlp.down_proj", "model.layers.1.self_attn.q_proj"]
    assert layers[1].proj == "down_proj" and layers[2].block == 1
    for l in layers:
        assert np.array_equal(l.keep(), keep[l.name])


def test_bad_masks_files(tmp_path):
    from safetensors.numpy import load_file, save_file

    path, keep = _masks_file(tmp_path)
    data = path.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated or corrupt"):
        wl.from_masks(tmp_path / "trunc.safetensors")
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as fh:
        meta = fh.metadata()
    tensors = load_file(str(path))
    save_file(tensors, str(tmp_path / "v9.safetensors"), metadata=dict(meta, version="9"))
    with pytest.raises(UserError, match="unknown masks format version"):
        wl.from_masks(tmp_path / "v9.safetensors")
    manifest = json.loads(meta["manifest"])
    manifest["layers"]["model.layers.0.self_attn.q_proj"]["shape"] = [16, 64]
    save_file(tensors, str(tmp_path / "shape.safetensors"), metadata=dict(meta, manifest=json.dumps(manifest)))
    with pytest.raises(UserError, match="manifest says"):
        wl.from_masks(tmp_path / "shape.safetensors")
    with pytest.raises(UserError, match="not found"):
        wl.from_masks(tmp_path / "missing.safetensors")
