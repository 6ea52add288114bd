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
from simulator.cost.objective import cycle_limit, select, with_energy
from simulator.cost.partition import candidate_bound, evaluate_partition, lb_ideal
from simulator.cost.systolic import systolic_mode_layer
from simulator.cost.tiles import cdiv, tilings
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
        r = select([with_energy(dict(p), hw) for p in core.dense_layer(rows, cols, tokens, hw_params(hw))], hw)
        r["lb_ideal"] = lb_ideal(rows * cols, rows, cols, tokens, hw)
        return r
    return dense_layer(rows, cols, tokens, hw)


def nm_result(rows: int, cols: int, tokens: int, group_max: int, hw: Hardware, engine: str) -> dict:
    """:func:`simulator.cost.dense.nm_layer`, in the C++ core when ``engine == "cpp"``."""
    if engine == "cpp":
        points = [with_energy(dict(p), hw) for p in core.nm_layer(rows, cols, tokens, group_max, hw_params(hw))]
        r = select(points, hw)
        if r["nm_n"] >= hw.nm_m:  # the mask runs as dense (n = m): dense_layer's result
            r["lb_ideal"] = lb_ideal(rows * cols, rows, cols, tokens, hw)
        return r
    return nm_layer(rows, cols, tokens, group_max, hw)


def attention(hidden: int, kv_dim: int, tokens: int, context: int, batch: int, hw: Hardware, engine: str) -> dict:
    """:func:`simulator.cost.dense.attention_block`, in the C++ core when ``engine == "cpp"``."""
    if engine == "cpp":
        return dict(core.attention_block(hidden, kv_dim, tokens, context, batch, hw_params(hw)))
    return attention_block(hidden, kv_dim, tokens, context, batch, hw)


# ---------------------------------------------------------------------------- cycle-level modes
def _candidate_points(st: MaskStats, G: int, n: int, hw: Hardware, engine: str, pads: int | None = None) -> list[dict]:
    """The points of the top-G set (:func:`simulator.cost.partition.evaluate_partition`), with the
    cost in the C++ core or in Python; ``pads`` given: that padding instead of the mask's."""
    dense = st.dense(G)
    row_sparse = st.row_sparse(dense)
    if pads is None:
        pads = st.pads(dense, hw.rle_bits) if hw.index_format == "rle" and G < st.cols else 0
    gs = _gather(st, G, hw)
    if engine == "cpp":
        return [with_energy(dict(r), hw) for r in core.cycle_partition(st.rows, st.cols, n, G, row_sparse, pads, gs, hw_params(hw))]
    tiles = tilings(st.rows, st.cols, n, hw, sparse=G < st.cols, own=False)
    return evaluate_partition(st.rows, st.cols, n, G, [int(x) for x in row_sparse], pads, gs, hw, tiles)


def _gather(st: MaskStats, G: int, hw: Hardware) -> int:
    return hw.gather_scaled or st.gather(st.dense(G), hw.macs_per_line, hw.banks, GATHER_SCALE)  # 64 rows: cheap


class _Search:
    """The state of :func:`search`: the points found, and whether a lower bound can still win."""

    def __init__(self, hw: Hardware):
        self.hw = hw
        self.points: list[tuple[int, int, dict]] = []  # (candidate index, tiling index, point)
        self.c_best = self.best_val = None
        self.c_low = None  # objective cycles: no point of the search has fewer cycles than this

    def add(self, i: int, pts: list[dict], threshold: float) -> None:
        for j, r in enumerate(pts):
            r["dense_threshold"] = threshold
            self.points.append((i, j, r))
            c, e = r["cycles"], r["energy"]["total"]
            self.c_best = c if self.c_best is None else min(self.c_best, c)
            v = e if self.hw.objective == "energy" else e * c
            self.best_val = v if self.best_val is None else min(self.best_val, v)

    def e_safe(self) -> int | None:
        """Objective cycles: the least energy among the points certainly within the final limit."""
        limit = cycle_limit(self.c_low, self.hw)
        es = [r["energy"]["total"] for _i, _j, r in self.points if r["cycles"] <= limit]
        return min(es) if es else None

    def can_win(self, c: int, e: int, e_safe: int | None) -> bool:
        """Whether a point whose cycles / energy are at least c / e can be the answer."""
        hw = self.hw
        if hw.objective == "cycles":
            # a point below the fewest cycles found may lower the final limit: it must be seen
            return self.c_best is None or c < self.c_best or (c <= cycle_limit(self.c_best, hw) and (e_safe is None or e <= e_safe))
        return self.best_val is None or (e if hw.objective == "energy" else e * c) <= self.best_val


def search(st: MaskStats, n: int, hw: Hardware, engine: str) -> dict:
    """:func:`simulator.reference.cycle_layer`'s answer from the layer's statistics, visiting only
    the candidate sets that can still win.

    Each top-G set has lower bounds (c_G, e_G) of its points' cycles and energy
    (:func:`simulator.cost.partition.candidate_bound`, from the column counts alone).  Sets are
    visited by that bound under the objective (ties: ascending G); a set is skipped when its bound
    cannot win, and the visits end when no later set can.  Under ``cycles``: with C = the fewest
    cycles found, a set with c_G > limit(C) cannot hold a point within the final limit; the final
    fewest cycles are at least C_low = min(C, c_G of the set visited now) (sets come by c_G), so the
    points found within limit(C_low) are within the final limit, and a set whose e_G is above their
    least energy cannot win — unless it may hold a point below C (c_G < C), which could lower the
    final limit: such a set is always evaluated.  Under ``energy`` / ``edp``: a bound above the best value found.  A
    set that passes is bounded again with its gather factor (a 64-row pass: compute >= (M*G*N +
    S*N*gather) / P) and, for a run-length index whose padding is not known yet, by its points
    without padding (padding only adds bits and energy), before the pass over the mask for it.
    Every key is monotone in (cycles, energy) and ties go to the first point in the reference's
    order, so the answer is the reference's."""
    M, K = st.rows, st.cols
    cands = st.candidates(hw)
    bounds = [candidate_bound(M, K, n, G, st.sparse_kept(G), hw) for _threshold, G in cands]
    if hw.objective == "cycles":
        order = sorted(range(len(cands)), key=lambda i: (bounds[i], i))
    elif hw.objective == "energy":
        order = sorted(range(len(cands)), key=lambda i: (bounds[i][1], bounds[i][0], i))
    else:
        order = sorted(range(len(cands)), key=lambda i: (bounds[i][0] * bounds[i][1], bounds[i][0], i))
    s = _Search(hw)
    for i in order:
        c_lb, e_lb = bounds[i]
        e_safe = None
        if hw.objective == "cycles":
            if s.c_best is not None and c_lb > cycle_limit(s.c_best, hw):
                break  # sorted by c_G: no later set can either
            s.c_low = c_lb if s.c_best is None else min(s.c_best, c_lb)
            e_safe = s.e_safe()
        elif not s.can_win(c_lb, e_lb, None):
            break  # sorted by the objective's bound
        if not s.can_win(c_lb, e_lb, e_safe):
            continue
        threshold, G = cands[i]
        S = st.sparse_kept(G)
        if S and s.points:
            c2 = max(c_lb, cdiv((M * G * GATHER_SCALE + S * _gather(st, G, hw)) * n, GATHER_SCALE * hw.macs))
            if not s.can_win(c2, e_lb + (c2 - c_lb) * hw.static_fj_per_cycle, e_safe):
                continue
            if hw.index_format == "rle" and not st.has_pads(st.dense(G), hw.rle_bits):
                low = _candidate_points(st, G, n, hw, engine, pads=0)
                if not any(s.can_win(r["cycles"], r["energy"]["total"], e_safe) for r in low):
                    continue
        s.add(i, _candidate_points(st, G, n, hw, engine), threshold)
    s.points.sort(key=lambda t: (t[0], t[1]))
    return dict(select([r for _i, _j, r in s.points], hw))


def cycle_mode(st: MaskStats, tokens: list[int], hw: Hardware, engine: str) -> list[dict]:
    """``cycle`` mode: the partition search (:func:`search`) beside the dense baseline and, for an
    n:m-compliant mask, the n:m engine.  The answer is the reference's."""
    rows, cols = st.rows, st.cols
    gmax = st.group_max(hw.nm_m)
    out = []
    for n in tokens:
        best = search(st, n, hw, engine)
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
