"""The readable specification of every simulator mode: one function per mode, on a bool keep mask.

Each takes ``keep[M, K]`` (1 = kept; M = out-features = rows, K = in-features = columns), ``N``
tokens in flight and a :class:`~simulator.hardware.Hardware`, and returns a plain dict of integers
(cycles, bits ...).  Written to be read, not to be fast: use it on small matrices (tests, hand
checks); the fast path (:mod:`simulator.fast`: the mask statistics of :mod:`simulator.stats` + the
C++ core) must agree with it exactly.

What is here is what READS THE MASK — the numpy twins of the mask statistics (kept entries per
column and row, run-length padding, bank conflicts, the n:m groups, besa-code's reordering) and each
mode's search.  The integer formulas every mode shares with the fast path (tiles, traffic, the cost
of one partition, the dense and n:m engines, energy, BESA's retry loop) are the cost library
:mod:`simulator.cost`.

Modes (written out in ``docs/simulator.md``):

``besa-compat``  :func:`compat_layer` — section 2: exactly how the BESA authors computed their ViTCoD
                 table, quirks included (each marked ``QUIRK`` in :mod:`simulator.cost.compat`).
``besa-code``    :func:`code_layer` — besa-compat plus their column-reordering bug, bit for bit.
``corrected``    :func:`corrected_layer` — the same compute-only model without the quirks.
``cycle``        :func:`cycle_mode` — section 3: tiled dense engine + sparse engine with row->line
                 assignment, double-buffered memory, index formats, stalls.
``dense``        :func:`dense_mode` — the same machine running every weight densely (no index traffic).
``nm``           :func:`nm_mode` — a 2:4-style sparse tensor engine (hardware ``nm_n:nm_m``) with
                 log2(m)-bit metadata.
"""

from __future__ import annotations

import numpy as np

from simulator.cost.compat import compat_patches, corrected_cycles, corrected_dense_cycles
from simulator.cost.dense import as_mode_result, dense_layer, nm_layer, with_baselines
from simulator.cost.objective import select
from simulator.cost.partition import column_order, dense_columns, evaluate_partition, lb_ideal, partition_candidates
from simulator.cost.systolic import systolic_mode_layer
from simulator.cost.tiles import cdiv, tilings
from simulator.hardware import GATHER_SCALE, Hardware


# ============================================================================ besa-compat / besa-code
def compat_layer(keep: np.ndarray, tokens: int, hw: Hardware, code: bool = False) -> dict:
    """``besa-compat`` cycles of one matrix and their dense baseline, exactly as the BESA authors:
    their retry loop over a threshold on the column counts, per column patch of a wide matrix
    (:func:`simulator.cost.compat.compat_patches`, quirks included).

    ``code=True`` (mode ``besa-code``) also reproduces their column reordering bit for bit, see
    :func:`reorder_sparse_nnz`.
    """
    sparse_nnz = (lambda b, e, dense: reorder_sparse_nnz(keep[:, b:e], dense)) if code else None
    M, K = keep.shape
    return compat_patches(keep.sum(axis=0), M, K, tokens, hw, sparse_nnz)


def code_layer(keep: np.ndarray, tokens: int, hw: Hardware) -> dict:
    """``besa-code``: :func:`compat_layer` with their column reordering."""
    return compat_layer(keep, tokens, hw, code=True)


def reorder_sparse_nnz(keep: np.ndarray, dense: np.ndarray) -> int:
    """Kept entries their ``reorder.calc`` leaves in columns >= G (``len(sparser)`` in ViTCoD_comp.py).

    A literal transcription (dgl/torch tensor ops as numpy): the edge lists (column ids ``a``, row ids
    ``b``) go through, for each dense column h_i, "i -> 200, h_i -> i, 200 -> h_i" on BOTH lists, then
    ``new_graph[b, a] = 0`` (out-of-range writes skipped by their try/except).  The spec's nnz_s is the
    kept count of the non-dense columns; their code differs in two ways (BUG, reproduced only in
    ``besa-code``): the temporary id 200 is a real node id, so in the first swap node 200 (column 200
    AND row 200) is merged into h_0, and at i = 200 node 200 is merged into h_200; rows share the
    node ids, so rows are permuted and merged too and merged cells collapse into one.
    """
    b, a = np.nonzero(keep)  # row-major edge order: b = rows (dst), a = columns (src)
    tmp = 200
    for i, h in enumerate(np.flatnonzero(dense)):
        a[a == i] = tmp
        b[b == i] = tmp
        a[a == h] = i
        b[b == h] = i
        a[a == tmp] = h
        b[b == tmp] = h
    M, K = keep.shape
    ok = (b < M) & (a < K)
    new_kept = np.zeros((M, K), bool)
    new_kept[b[ok], a[ok]] = True
    return int(new_kept[:, int(dense.sum()) :].sum())


# ============================================================================ corrected
def corrected_layer(keep: np.ndarray, tokens: int, hw: Hardware) -> dict:
    """``corrected``: the BESA-compat model without its quirks.

    * dense work M*G (not K*G); no patching (the formula holds for any shape);
    * the partition is the best of ALL "top-G columns" choices (G = 0..K, columns by kept count,
      ties by index) instead of 5 tries of +-0.1 on a threshold;
    * lines: proportional split, each engine with work gets >= 1 line;
    * dense baseline: the true ceil(M*K*N/P).
    """
    M, K = keep.shape
    counts = keep.sum(axis=0)
    order = sorted(range(K), key=lambda j: (-int(counts[j]), j))
    E = int(counts.sum())
    best, D = None, 0
    for G in range(K + 1):
        if G:
            D += int(counts[order[G - 1]])
        r = corrected_cycles(G, E - D, M, tokens, hw.lines, hw.macs_per_line)
        if best is None or r["cycles"] < best["cycles"]:
            best = r
    return dict(best, dense_cycles=corrected_dense_cycles(M, K, tokens, hw), nnz=E, dense_threshold=None, tries=K + 1)


# ============================================================================ cycle-level model
def rle_pads(row_keep: np.ndarray, bits: int) -> int:
    """Padding entries run-length coding needs for one row (of the sparse columns).

    Each kept value stores the count of zeros before it in ``bits`` bits (max R = 2**bits - 1); a longer
    gap is bridged by explicit zero entries, each covering R zeros plus itself (R + 1 positions).
    Trailing zeros need nothing (row length is known).
    """
    R1 = 1 << bits  # R + 1
    pads, gap = 0, 0
    for kept in row_keep:
        if kept:
            pads += gap // R1
            gap = 0
        else:
            gap += 1
    return pads


def bank_gather_scaled(keep: np.ndarray, sparse_cols: np.ndarray, hw: Hardware) -> int:
    """Gather factor (x GATHER_SCALE, rounded up) of the sparse engine from bank conflicts.

    Activation j sits in SRAM bank j mod ``banks``; a beat feeds a line's m MACs with m consecutive
    kept values of a row and takes as many cycles as the most requests to one bank, against
    ceil(k/banks) for the k values of a conflict-free beat (what the dense engine's consecutive reads
    take).  Factor = sum of the first / sum of the second over a fixed sample of min(M, 64) rows
    (i*M//S).  A constant ``gather_factor`` overrides it.
    """
    if hw.gather_scaled:
        return hw.gather_scaled
    M = keep.shape[0]
    S = min(M, 64)
    ideal = cost = 0
    for r in (i * M // S for i in range(S)):
        cols = np.flatnonzero(keep[r] & sparse_cols)
        for b0 in range(0, len(cols), hw.macs_per_line):
            beat = cols[b0 : b0 + hw.macs_per_line]
            cost += int(np.bincount(beat % hw.banks).max())
            ideal += cdiv(len(beat), hw.banks)
    return max(GATHER_SCALE, cdiv(cost * GATHER_SCALE, ideal)) if ideal else GATHER_SCALE


def nm_group_max(keep: np.ndarray, m: int) -> int:
    """Most kept entries in any group of m consecutive input features (the smallest covering n)."""
    M, K = keep.shape
    best = 0
    for i in range(M):
        for g0 in range(0, K, m):
            best = max(best, int(keep[i, g0 : g0 + m].sum()))
    return best


def cycle_layer(keep: np.ndarray, tokens: int, hw: Hardware) -> dict:
    """The cycle model's search on one matrix: every point (tiling, fastest lane split) of every
    partition candidate (:func:`simulator.cost.partition.partition_candidates`: every top-G set under
    ``optimal``) in the order (G, tiling); :func:`simulator.cost.objective.select` picks.

    Returns the chosen point (:func:`~simulator.cost.partition.evaluate_partition`) plus
    ``dense_threshold`` (the name of its dense-column set), ``nnz``, ``lb_ideal`` (partition-free,
    <= cycles).
    """
    keep = np.asarray(keep, dtype=bool)
    M, K = keep.shape
    counts = keep.sum(axis=0)
    order = column_order(counts)
    points = []
    for threshold, G in partition_candidates(counts, M, hw):
        dense = dense_columns(order, G)
        sparse = keep[:, ~dense]
        row_sparse = [int(x) for x in sparse.sum(axis=1)]
        pads = sum(rle_pads(sparse[i], hw.rle_bits) for i in range(M)) if hw.index_format == "rle" else 0
        gs = bank_gather_scaled(keep, ~dense, hw)
        tiles = tilings(M, K, tokens, hw, sparse=bool((~dense).any()), own=False)
        points += [dict(r, dense_threshold=threshold) for r in evaluate_partition(M, K, tokens, G, row_sparse, pads, gs, hw, tiles)]
    best = select(points, hw)
    nnz = int(keep.sum())
    best.update(nnz=nnz, lb_ideal=lb_ideal(nnz, M, K, tokens, hw))
    return best


def cycle_mode(keep: np.ndarray, tokens: int, hw: Hardware) -> dict:
    """``cycle``: :func:`cycle_layer` beside the dense baseline and, for an n:m-compliant mask, the
    n:m engine (:func:`simulator.cost.dense.with_baselines`)."""
    M, K = keep.shape
    gmax = nm_group_max(keep, hw.nm_m)
    nm = nm_layer(M, K, tokens, gmax, hw) if gmax <= hw.nm_n else None
    return with_baselines(cycle_layer(keep, tokens, hw), dense_layer(M, K, tokens, hw), nm, gmax, hw)


def dense_mode(keep: np.ndarray, tokens: int, hw: Hardware) -> dict:
    """``dense``: every weight on the dense engine (:func:`simulator.cost.dense.dense_layer`)."""
    d = dense_layer(*keep.shape, tokens, hw)
    return as_mode_result(d, d, int(keep.sum()), hw)


def nm_mode(keep: np.ndarray, tokens: int, hw: Hardware) -> dict:
    """``nm``: the n:m engine at the mask's smallest covering n (:func:`simulator.cost.dense.nm_layer`)."""
    M, K = keep.shape
    r = nm_layer(M, K, tokens, nm_group_max(keep, hw.nm_m), hw)
    return as_mode_result(r, dense_layer(M, K, tokens, hw), int(keep.sum()), hw, nm_cycles=True)


def systolic_mode(keep: np.ndarray, tokens: int, hw: Hardware) -> dict:
    """``systolic``: SCALE-Sim v3's systolic array (``hw.systolic_shape``, ``hw.dataflow``) at the mask's
    smallest covering n:m (:func:`simulator.cost.systolic.systolic_mode_layer`)."""
    M, K = keep.shape
    return dict(systolic_mode_layer(M, K, tokens, nm_group_max(keep, hw.nm_m), hw), nnz=int(keep.sum()))
