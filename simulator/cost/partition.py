"""One dense-column set on the dense + sparse engines, and the sets to search (cost library).

The cycle model (``docs/simulator.md`` has the derivation):

* the dense-column set (partition) is searched per layer over threshold candidates
  (:func:`partition_candidates`), jointly with the lane split (Ld dense lines, Ls sparse lines, or
  both engines time-sharing all L lines) and the tiling (the largest tiles that double-buffer); the
  fewest cycles win, then the fewest DRAM bits, then the first in the enumeration order
  (candidate, tiling, option);
* per token tile the engines run in parallel; each pays the pipeline fill lambda once per
  (row tile, token tile) it works on, every engine alike;
* memory and compute overlap over the layer (double-buffered streaming): cycles = max(C, DRAM).

:func:`evaluate_partition` is the cost of one set (``cpp/model.cpp`` ``evaluate_partition``); the
search over the sets reads the mask and lives in the per-mode code (:func:`simulator.reference.cycle_layer`,
:mod:`simulator.fast`).
"""

from __future__ import annotations

import heapq

import numpy as np

from simulator.cost.tiles import bound_of, cdiv, classes, index_bits, mem_cycles, overlap, tiling_result, traffic
from simulator.hardware import GATHER_SCALE, Hardware


def max_line_load(costs: list[int], lines: int, assign: str) -> int:
    """Most beats on any line after assigning rows (``costs`` in row order) to ``lines`` lines.

    ``round_robin``: row j -> line j mod lines.  ``lpt``: rows by cost descending (ties: lower row
    first), each to the least-loaded line (ties: lower line).
    """
    if not costs or lines <= 0:
        return 0
    if assign == "round_robin":
        load = [0] * lines
        for j, c in enumerate(costs):
            load[j % lines] += c
        return max(load)
    heap = [(0, ln) for ln in range(lines)]
    for j in sorted(range(len(costs)), key=lambda j: (-costs[j], j)):
        load, ln = heapq.heappop(heap)
        heapq.heappush(heap, (load + costs[j], ln))
    return max(load for load, _ in heap)


def split_options(M: int, G: int, S: int, hw: Hardware) -> list[tuple[int, int, bool]]:
    """Lane splits to try: (dense lines, sparse lines, time-shared), in search order.

    An engine without work gets no lines (zero dense lines allowed); with both engines busy:
    every space split Ld = 1..L-1 then both engines taking turns on all L lines (``optimal``), or
    ViTCoD's proportional split (``proportional``).  One line can only take turns.
    """
    L = hw.lines
    if G == 0 and S == 0:
        return [(0, 0, False)]
    if S == 0:
        return [(L, 0, False)]
    if G == 0:
        return [(0, L, False)]
    if L == 1:
        return [(1, 1, True)]
    if hw.split == "proportional":
        Ld = min(max((L * M * G) // (M * G + S), 1), L - 1)
        return [(Ld, L - Ld, False)]
    return [(Ld, L - Ld, False) for Ld in range(1, L)] + [(L, L, True)]


def dense_beats(tm: int, tn: int, width: int, lines: int, m: int) -> int:
    """Cycles of a dense tm x width block for tn tokens on ``lines`` lines of m MACs: the better of
    two output-stationary mappings — each line owns rows and its m MACs split the columns
    (ceil(tm/lines)*tn*ceil(width/m)), or each MAC owns a row (ceil(tm/(lines*m))*tn*width), which
    wastes nothing on a few dense columns."""
    return min(cdiv(tm, lines) * tn * cdiv(width, m), cdiv(tm, lines * m) * tn * width)


def engine_compute(M: int, N: int, G: int, load: int, gs: int, tm: int, tn: int, Ld: int, has_sparse: bool, shared: bool, hw: Hardware) -> tuple[int, int, int]:
    """(total, dense engine, sparse engine) compute cycles of one option and tiling.

    Dense engine: per (row tile, token tile) :func:`dense_beats` + lambda.  Sparse engine: rows
    balanced over the WHOLE matrix (``load`` = most beats per token on a line), per token tile
    ceil(load*tn*gather) + R*lambda.
    """
    m, lam = hw.macs_per_line, hw.pipeline_fill
    R = cdiv(M, tm)
    rows = classes(M, tm)
    total = dsum = ssum = 0
    for tn_j, cnt in classes(N, tn):
        cd = sum(c * (dense_beats(t, tn_j, G, Ld, m) + lam) for t, c in rows) if G else 0
        cs = cdiv(load * tn_j * gs, GATHER_SCALE) + R * lam if has_sparse else 0
        dsum += cnt * cd
        ssum += cnt * cs
        total += cnt * (cd + cs if shared else max(cd, cs))
    return total, dsum, ssum


def evaluate_partition(M: int, K: int, N: int, G: int, row_sparse: list[int], pads: int, gs: int, hw: Hardware, tiles: list[tuple[int, int]]) -> dict:
    """Best (tiling, lane split) for one dense-column set: G dense columns, ``row_sparse[i]`` kept
    entries of row i in the other columns, ``pads`` rle padding entries in all, gather ``gs``/256."""
    S = sum(row_sparse)
    costs = [cdiv(x, hw.macs_per_line) for x in row_sparse]
    W = (M * G + S + pads) * hw.weight_bits
    I = index_bits(M, K - G, S, pads, hw)
    loads: dict[int, int] = {}
    best = None
    for tm, tn in tiles:
        bits = traffic(M, K, N, tm, tn, W, I, hw)
        for Ld, Ls, shared in split_options(M, G, S, hw):
            if Ls and Ls not in loads:
                loads[Ls] = max_line_load(costs, Ls, hw.assign)
            C, dc, sc = engine_compute(M, N, G, loads.get(Ls, 0), gs, tm, tn, Ld, S > 0, shared, hw)
            cycles, Mem, C = overlap(C, bits, hw)
            if best is None or (cycles, sum(bits.values())) < (best["cycles"], best["_bits"]):
                best = tiling_result(cycles, Mem, C, bits, tm, tn, N, dc, sc, lines_dense=Ld, lines_sparse=Ls, shared=int(shared))
    del best["_bits"]
    best["bound"] = bound_of(best)
    A, O = K * N * hw.act_bits, M * N * hw.out_bits
    F = mem_cycles(W + I + A + O, hw)
    best.update(
        G=G,
        nnz_s=S,
        gather=gs,
        lb_split=max(cdiv((M * G + S) * N, hw.macs), F),
        memory_floor=F,
        macs=(M * G + S) * N,
        index_entries=(S + pads) * best["token_tiles"] if K - G else 0,
    )
    return best


def lb_ideal(nnz: int, M: int, K: int, N: int, hw: Hardware) -> int:
    """Tight, partition-free lower bound: kept work on all P MACs, or kept values + activations +
    outputs once at full bandwidth (a free index) — whichever is larger."""
    return max(cdiv(nnz * N, hw.macs), mem_cycles(nnz * hw.weight_bits + K * N * hw.act_bits + M * N * hw.out_bits, hw))


def partition_candidates(counts: np.ndarray, rows: int, hw: Hardware) -> list[tuple[float, np.ndarray]]:
    """Dense-column sets to search, by ascending size: (threshold, bool dense[K]); column j is dense
    when counts[j] > threshold * rows.

    ``partition = "tau"``: the one set of the hardware's fixed threshold ``hw.tau``.  ``optimal``:
    the fully kept columns alone (named by threshold 1), then {16*count > k*M} for k = 15 .. 0
    (threshold k/16); equal sets are tried once (the highest threshold names them).  A fully kept
    column is in every set: streaming it through the sparse engine costs the same beats plus index
    metadata.
    """
    counts = np.asarray(counts, np.int64)
    if hw.partition == "tau":
        return [(hw.tau, counts > hw.tau * rows)]
    out: dict[int, tuple[float, np.ndarray]] = {}
    full = counts >= rows
    out[int(full.sum())] = (1.0, full)
    for k in range(15, -1, -1):
        d = counts * 16 > k * rows
        out.setdefault(int(d.sum()), (k / 16, d))
    return [out[g] for g in sorted(out)]
