"""One dense-column set on the dense + sparse engines, and the sets to search (cost library).

The cycle model (``docs/simulator.md`` has the derivation):

* the dense-column set (partition) is searched per layer over every top-G set
  (:func:`partition_candidates`, G = 0 .. K), jointly with the lane split (Ld dense lines, Ls sparse
  lines, or both engines time-sharing all L lines) and the tiling (the largest tiles that
  double-buffer); per tiling the fastest split, across (set, tiling) the objective
  (:mod:`simulator.cost.objective`), then the first in the enumeration order (set, tiling);
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

from simulator.cost.energy import energy_fj
from simulator.cost.objective import with_energy
from simulator.cost.tiles import bound_of, cdiv, classes, dequant_cycles, group_bits, index_bits, mem_cycles, overlap, sram_bits, tiling_result, traffic
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


def evaluate_partition(M: int, K: int, N: int, G: int, row_sparse: list[int], pads: int, gs: int, hw: Hardware, tiles: list[tuple[int, int]]) -> list[dict]:
    """One dense-column set: G dense columns, ``row_sparse[i]`` kept entries of row i in the other
    columns, ``pads`` rle padding entries in all, gather ``gs``/256.  One point per tiling (in
    ``tiles`` order): its fastest lane split (the first of the fewest cycles), with the SRAM bits of
    its loop nest and its energy; :func:`simulator.cost.objective.select` picks among them."""
    S = sum(row_sparse)
    costs = [cdiv(x, hw.macs_per_line) for x in row_sparse]
    beats = M * cdiv(G, hw.macs_per_line) + sum(costs)
    stored = M * G + S + pads
    W = stored * hw.weight_bits + group_bits(M, K, hw)
    I = index_bits(M, K - G, S, pads, hw)
    A, O = K * N * hw.act_bits, M * N * hw.out_bits
    F = mem_cycles(W + I + A + O, hw)
    loads: dict[int, int] = {}
    out = []
    for tm, tn in tiles:
        bits = traffic(M, K, N, tm, tn, W, I, hw)
        DQ = dequant_cycles(stored, cdiv(N, tn), hw)
        best = None
        for Ld, Ls, shared in split_options(M, G, S, hw):
            if Ls and Ls not in loads:
                loads[Ls] = max_line_load(costs, Ls, hw.assign)
            C, dc, sc = engine_compute(M, N, G, loads.get(Ls, 0), gs, tm, tn, Ld, S > 0, shared, hw)
            cycles, Mem, C = overlap(max(C, DQ), bits, hw)
            if best is None or cycles < best["cycles"]:
                best = tiling_result(cycles, Mem, C, bits, tm, tn, N, dc, sc, lines_dense=Ld, lines_sparse=Ls, shared=int(shared))
        del best["_bits"]
        T = best["token_tiles"]
        best.update(
            sram_bits(N, G, S, pads, beats, tm, tn, M, W, I, bits, hw),
            bound=bound_of(best),
            G=G,
            nnz_s=S,
            gather=gs,
            lb_split=max(cdiv((M * G + S) * N, hw.macs), F),
            memory_floor=F,
            macs=(M * G + S) * N,
            index_entries=(S + pads) * T if K - G else 0,
            dequant_weights=stored * T if hw.group_size else 0,
        )
        out.append(with_energy(best, hw))
    return out


def candidate_bound(M: int, K: int, N: int, G: int, S: int, hw: Hardware) -> tuple[int, int]:
    """(cycles, energy fJ) no point of the top-G set with S sparse kept entries can go below: its
    kept work on all MACs; its values (no padding), the index of that many values, activations and
    outputs each moved once from DRAM, written once and read once on chip; activations read once
    per stored value; one partial-sum update per beat of the kept values; index and dequantisation
    once per value; static power for those cycles."""
    m = hw.macs_per_line
    W = (M * G + S) * hw.weight_bits + group_bits(M, K, hw)
    I = index_bits(M, K - G, S, 0, hw)
    A, O = K * N * hw.act_bits, M * N * hw.out_bits
    cycles = max(cdiv((M * G + S) * N, hw.macs), mem_cycles(W + I + A + O, hw))
    low = {
        "cycles": cycles,
        "bits_weights": W,
        "bits_index": I,
        "bits_act": A,
        "bits_out": O,
        "sram_weights": 2 * W,
        "sram_index": 2 * I,
        "sram_act": A + hw.act_bits * N * (G + S),
        "sram_out": 2 * hw.acc_bits * N * (M * cdiv(G, m) + cdiv(S, m)) + O,
        "macs": (M * G + S) * N,
        "index_entries": S if K - G else 0,
        "dequant_weights": M * G + S if hw.group_size else 0,
    }
    return cycles, energy_fj(low, hw)["total"]


def lb_ideal(nnz: int, M: int, K: int, N: int, hw: Hardware) -> int:
    """Tight, partition-free lower bound: kept work on all P MACs, or kept values + activations +
    outputs once at full bandwidth (a free index) — whichever is larger."""
    return max(cdiv(nnz * N, hw.macs), mem_cycles(nnz * hw.weight_bits + K * N * hw.act_bits + M * N * hw.out_bits, hw))


def column_order(counts: np.ndarray) -> np.ndarray:
    """Columns by kept count, most first (ties: lower index first); the dense set of size G is the
    first G (a "top-G set")."""
    return np.argsort(-np.asarray(counts, np.int64), kind="stable")


def dense_columns(order: np.ndarray, G: int) -> np.ndarray:
    """The top-G set as a bool ``[K]`` (``order`` from :func:`column_order`)."""
    dense = np.zeros(len(order), bool)
    dense[order[:G]] = True
    return dense


# The ``optimal`` family: every top-G set for G a multiple of ceil(K / PARTITION_GRID) (so every G
# when K <= PARTITION_GRID), plus G = 0, G = K and the threshold sets (the fully kept columns, then
# {16 * count > k * M} for k = 15 .. 0).
PARTITION_GRID = 32


def partition_candidates(counts: np.ndarray, rows: int, hw: Hardware) -> list[tuple[float, int]]:
    """Dense-column sets to search, ascending G: (threshold, G), the set being the top G columns
    (:func:`column_order`).

    ``optimal``: all-sparse (G = 0), all-dense (G = K), every G on the grid of :data:`PARTITION_GRID`
    steps and every threshold set; ``sparse``: G = 0; ``dense``: G = K; ``tau``: the one set
    {count > hw.tau * M} (a top-G set: whole tie groups).  ``threshold`` names the set in layers.csv
    (``dense_threshold``): ``hw.tau`` under ``tau``, else the kept fraction of the set's least-kept
    column (1.0 for G = 0).
    """
    counts = np.asarray(counts, np.int64)
    K = len(counts)
    if hw.partition == "tau":
        return [(hw.tau, int((counts > hw.tau * rows).sum()))]
    desc = np.sort(counts)[::-1]

    def named(G: int) -> tuple[float, int]:
        return (round(float(desc[G - 1] / rows), 6) if G else 1.0, G)  # 6 digits: what layers.csv holds

    if hw.partition == "sparse":
        return [named(0)]
    if hw.partition == "dense":
        return [named(K)]
    sizes = set(range(0, K + 1, -(-K // PARTITION_GRID))) | {0, K, int((counts >= rows).sum())}
    sizes |= {int((counts * 16 > k * rows).sum()) for k in range(16)}
    return [named(G) for G in sorted(sizes)]
