"""The fast path of every mode: a layer's :class:`~simulator.stats.MaskStats` (each mask read once)
+ the cost library (:mod:`simulator.cost`), with the cost of one partition, the dense and the n:m
engines, and attention in the C++ core (``engine="cpp"``) or in Python (``engine="python"``).

Results are :mod:`simulator.reference`'s exactly (the tests compare them); only the search is
faster: ``corrected`` is vectorised over every partition, ``besa-code``'s reordering works on the
packed mask, and ``cycle`` visits its candidates best bound first and stops when no later one can win.
"""

from __future__ import annotations

import numpy as np

from simulator import stats
from simulator.cost.compat import compat_patches, corrected_dense_cycles
from simulator.cost.dense import as_mode_result, attention_block, dense_layer, nm_layer, with_baselines
from simulator.cost.partition import evaluate_partition, lb_ideal
from simulator.cost.systolic import systolic_mode_layer
from simulator.cost.tiles import cdiv, dram_bits, index_bits, mem_cycles, tilings
from simulator.cpp import core, hw_params
from simulator.hardware import GATHER_SCALE, Hardware
from simulator.stats import MaskStats


# ---------------------------------------------------------------------------- compute-only modes
def reorder_sparse_nnz_packed(packed: np.ndarray, col0: int, cols: int, dense: np.ndarray, counts: np.ndarray) -> int:
    """Fast :func:`simulator.reference.reorder_sparse_nnz` on columns [col0, col0+cols) of a packed mask.

    Cells of rows and columns whose id is not merged with another map one to one; only the few merged
    rows / columns (ids 0, 200, h_0, h_200 ...) are unpacked to count the cells that collapse.
    """
    rows = packed.shape[0]
    high = np.flatnonzero(dense).astype(np.int64)
    G = high.size
    n = max(rows, cols, 201)
    lab = stats.reorder_labels(high, n)
    rl, cl = lab[:rows], lab[:cols]

    def merged(labels):
        _, inv, cnt = np.unique(labels, return_inverse=True, return_counts=True)
        return np.flatnonzero(cnt[inv] > 1)

    mr, mc = merged(rl), merged(cl)
    # cells (r, c) with neither r nor c merged: one to one; count those landing in columns >= G in range
    col_ok = (cl >= G) & (cl < cols)
    col_ok[mc] = False
    row_ok = rl < rows
    row_ok[mr] = False

    def col_bits(c_idx):  # (rows, len(c_idx)) bool
        c = c_idx + col0
        return ((packed[:, c >> 3] >> (c & 7).astype(np.uint8)) & 1).astype(bool)

    total = 0
    good_cols = np.flatnonzero(col_ok)
    if row_ok.all():
        total = int(counts[good_cols].sum())
    else:
        bad_rows = np.flatnonzero(~row_ok)
        sub = np.unpackbits(packed[bad_rows], axis=1, bitorder="little")[:, col0 : col0 + cols].astype(bool)
        total = int(counts[good_cols].sum() - sub[:, good_cols].sum())
    # cells touching a merged row or column: collapse duplicates
    cells = []
    if mr.size:
        sub = np.unpackbits(packed[mr], axis=1, bitorder="little")[:, col0 : col0 + cols].astype(bool)
        rr, cc = np.nonzero(sub)
        cells.append((mr[rr], cc))
    if mc.size:
        rr, cc = np.nonzero(col_bits(mc))
        cells.append((rr, mc[cc]))
    if cells:
        r = np.concatenate([x[0] for x in cells])
        c = np.concatenate([x[1] for x in cells])
        fr, fc = rl[r], cl[c]
        keep = (fr < rows) & (fc < cols) & (fc >= G)
        total += int(np.unique(fr[keep] * n + fc[keep]).size)
    return total


def compat_from_counts(counts: np.ndarray, rows: int, cols: int, tokens: int, hw: Hardware, packed: np.ndarray | None = None) -> dict:
    """``besa-compat`` from column counts (:func:`simulator.cost.compat.compat_patches`, as the
    reference); with ``packed`` given, ``besa-code`` (their column reordering reproduced bit for bit)."""
    sparse_nnz = None
    if packed is not None:
        sparse_nnz = lambda b, e, dense: reorder_sparse_nnz_packed(packed, b, e - b, dense, counts[b:e])  # noqa: E731
    return compat_patches(counts, rows, cols, tokens, hw, sparse_nnz)


def corrected_from_counts(counts: np.ndarray, rows: int, cols: int, tokens: int, hw: Hardware) -> dict:
    """``corrected`` vectorised over all G (reference.corrected_layer loops; results are identical)."""
    L, H = hw.lines, hw.macs_per_line
    counts = np.asarray(counts, np.int64)
    order = np.argsort(-counts, kind="stable")
    D = np.concatenate([[0], np.cumsum(counts[order])])  # kept in the top-G columns, G = 0..K
    E = int(D[-1])
    G = np.arange(cols + 1, dtype=np.int64)
    S = E - D
    dw, sw = rows * G, S  # dense / sparse work per token
    both = (G > 0) & (S > 0)
    if L == 1:
        Ld = np.where(G > 0, 1, 0)
        Ls = np.where(S > 0, 1, 0)
    else:
        prop = np.where(both, (L * dw) // np.maximum(dw + sw, 1), 0)
        Ld = np.where(both, np.clip(prop, 1, L - 1), np.where(G > 0, L, 0))
        Ls = np.where(both, L - Ld, np.where(S > 0, L, 0))
    dc = np.where(G > 0, -(-(dw * tokens) // np.maximum(Ld * H, 1)), 0)
    sc = np.where(S > 0, -(-(sw * tokens) // np.maximum(Ls * H, 1)), 0)
    cyc = np.where(both & (L == 1), dc + sc, np.maximum(dc, sc))
    g = int(np.argmin(cyc))  # first minimum, as the reference loop
    return {
        "cycles": int(cyc[g]),
        "dense_engine_cycles": int(dc[g]),
        "sparse_engine_cycles": int(sc[g]),
        "G": g,
        "lines_dense": int(Ld[g]),
        "lines_sparse": int(Ls[g]),
        "dense_cycles": corrected_dense_cycles(rows, cols, tokens, hw),
        "nnz": E,
        "dense_threshold": None,
        "tries": cols + 1,
    }


# ---------------------------------------------------------------------------- the C++ or the Python cost
def dense_result(rows: int, cols: int, tokens: int, hw: Hardware, engine: str) -> dict:
    """:func:`simulator.cost.dense.dense_layer`, in the C++ core when ``engine == "cpp"``."""
    if engine == "cpp":
        return dict(core.dense_layer(rows, cols, tokens, hw_params(hw)))
    return dense_layer(rows, cols, tokens, hw)


def nm_result(rows: int, cols: int, tokens: int, group_max: int, hw: Hardware, engine: str) -> dict:
    """:func:`simulator.cost.dense.nm_layer`, in the C++ core when ``engine == "cpp"``."""
    if engine == "cpp":
        return dict(core.nm_layer(rows, cols, tokens, group_max, hw_params(hw)))
    return nm_layer(rows, cols, tokens, group_max, hw)


def attention(hidden: int, kv_dim: int, tokens: int, context: int, batch: int, hw: Hardware, engine: str) -> dict:
    """:func:`simulator.cost.dense.attention_block`, in the C++ core when ``engine == "cpp"``."""
    if engine == "cpp":
        return dict(core.attention_block(hidden, kv_dim, tokens, context, batch, hw_params(hw)))
    return attention_block(hidden, kv_dim, tokens, context, batch, hw)


# ---------------------------------------------------------------------------- cycle-level modes
def _candidate_bounds(st: MaskStats, dense: np.ndarray, tokens: int, hw: Hardware) -> tuple[int, int]:
    """(cycles, DRAM bits) no evaluation of this dense-column set can go below: its kept work on all
    MACs, and its values (no padding), the index of that many values, activations and outputs each
    moved once.  Every result satisfies (cycles, bits) >= this pair (cycles first)."""
    M, K = st.rows, st.cols
    G = int(dense.sum())
    S = st.nnz - st.dense_kept(dense)
    bits = (M * G + S) * hw.weight_bits + index_bits(M, K - G, S, 0, hw) + K * tokens * hw.act_bits + M * tokens * hw.out_bits
    return max(cdiv((M * G + S) * tokens, hw.macs), mem_cycles(bits, hw)), bits


def _cycle_candidate_cpp(st: MaskStats, dense: np.ndarray, n: int, hw: Hardware, i: int, best_key: tuple | None) -> dict | None:
    """Candidate i's :func:`simulator.cost.partition.evaluate_partition` result, or None when it
    cannot beat ``best_key`` = (cycles, DRAM bits, candidate index) of the best so far."""
    G, row_sparse, hwp = int(dense.sum()), st.row_sparse(dense), hw_params(hw)
    bound = -1 if best_key is None else best_key[0]
    gs = hw.gather_scaled or st.gather(dense, hw.macs_per_line, hw.banks, GATHER_SCALE)  # 64 rows: cheap
    rle = hw.index_format == "rle" and G < st.cols
    if rle and best_key is not None and not st.has_pads(dense, hw.rle_bits):
        # padding only adds bits (so DRAM cycles) to every option: without it, a lower bound of
        # the candidate's (cycles, bits); only below the best is the pass for the padding worth it
        low = core.cycle_partition(st.rows, st.cols, n, G, row_sparse, 0, gs, hwp, bound)
        if low is None or (low["cycles"], dram_bits(low), i) > best_key:
            return None
    pads = st.pads(dense, hw.rle_bits) if rle else 0
    r = core.cycle_partition(st.rows, st.cols, n, G, row_sparse, pads, gs, hwp, bound)
    return None if r is None else dict(r)


def _cycle_candidate_python(st: MaskStats, dense: np.ndarray, n: int, hw: Hardware) -> dict:
    """Candidate ``dense``'s :func:`simulator.cost.partition.evaluate_partition` result, in Python."""
    G, row_sparse = int(dense.sum()), st.row_sparse(dense)
    pads = st.pads(dense, hw.rle_bits) if hw.index_format == "rle" else 0
    gs = hw.gather_scaled or st.gather(dense, hw.macs_per_line, hw.banks, GATHER_SCALE)
    tiles = tilings(st.rows, st.cols, n, hw, sparse=G < st.cols, own=False)
    return evaluate_partition(st.rows, st.cols, n, G, [int(x) for x in row_sparse], pads, gs, hw, tiles)


def cycle_mode(st: MaskStats, tokens: list[int], hw: Hardware, engine: str) -> list[dict]:
    """``cycle`` mode: the partition search of :func:`simulator.reference.cycle_layer` on the
    layer's statistics.  Candidates are evaluated best bound first (:func:`_candidate_bounds`); one
    whose (cycles, bits) bound is above the best result found so far cannot win (ties go to the
    smaller dense set, as the reference's order does) and ends the search.  The C++ search of a
    candidate is told the best cycles so far to prune against, and a candidate whose run-length
    padding is not known yet is first evaluated without it (a lower bound of its result), so that
    the pass over the mask for the padding is only made when the candidate can still win.
    The answer is the reference's."""
    rows, cols = st.rows, st.cols
    sets = st.candidates(hw)
    gmax = st.group_max(hw.nm_m)
    out = []
    for n in tokens:
        bounds = [_candidate_bounds(st, dense, n, hw) for _threshold, dense in sets]
        best, best_key = None, None
        for i in sorted(range(len(sets)), key=lambda i: (*bounds[i], i)):
            if best_key is not None and (*bounds[i], i) > best_key:
                break  # sorted by bound: no later candidate can win either
            threshold, dense = sets[i]
            if engine == "cpp":
                r = _cycle_candidate_cpp(st, dense, n, hw, i, best_key)
                if r is None:
                    continue  # cannot beat the best so far
            else:
                r = _cycle_candidate_python(st, dense, n, hw)
            key = (r["cycles"], dram_bits(r), i)
            if best_key is None or key < best_key:
                best, best_key = dict(r, dense_threshold=threshold), key
        best.update(nnz=st.nnz, lb_ideal=lb_ideal(st.nnz, rows, cols, n, hw))
        nm = nm_result(rows, cols, n, gmax, hw, engine) if gmax <= hw.nm_n else None
        out.append(with_baselines(best, dense_result(rows, cols, n, hw, engine), nm, gmax, hw))
    return out


def dense_mode(st: MaskStats, tokens: list[int], hw: Hardware, engine: str) -> list[dict]:
    """``dense`` mode (see :func:`simulator.reference.dense_mode`)."""
    out = []
    for n in tokens:
        d = dense_result(st.rows, st.cols, n, hw, engine)
        out.append(as_mode_result(d, d, st.nnz, hw))
    return out


def nm_mode(st: MaskStats, tokens: list[int], hw: Hardware, engine: str) -> list[dict]:
    """``nm`` mode (see :func:`simulator.reference.nm_mode`)."""
    gmax = st.group_max(hw.nm_m)
    out = []
    for n in tokens:
        r = nm_result(st.rows, st.cols, n, gmax, hw, engine)
        out.append(as_mode_result(r, dense_result(st.rows, st.cols, n, hw, engine), st.nnz, hw, nm_cycles=True))
    return out


def compat_mode(st: MaskStats, tokens: list[int], hw: Hardware, engine: str) -> list[dict]:
    """``besa-compat`` (see :func:`simulator.reference.compat_layer`)."""
    return [compat_from_counts(st.counts, st.rows, st.cols, n, hw) for n in tokens]


def code_mode(st: MaskStats, tokens: list[int], hw: Hardware, engine: str) -> list[dict]:
    """``besa-code`` (see :func:`simulator.reference.code_layer`)."""
    packed = st.mask()
    return [compat_from_counts(st.counts, st.rows, st.cols, n, hw, packed) for n in tokens]


def corrected_mode(st: MaskStats, tokens: list[int], hw: Hardware, engine: str) -> list[dict]:
    """``corrected`` (see :func:`simulator.reference.corrected_layer`)."""
    return [corrected_from_counts(st.counts, st.rows, st.cols, n, hw) for n in tokens]


def systolic_mode(st: MaskStats, tokens: list[int], hw: Hardware, engine: str) -> list[dict]:
    """``systolic`` (see :func:`simulator.reference.systolic_mode`): closed form, Python in every engine."""
    gmax = st.group_max(hw.nm_m)
    return [dict(systolic_mode_layer(st.rows, st.cols, n, gmax, hw), nnz=st.nnz) for n in tokens]
