"""The Python reference engine: the specification of every mode, written to be read, not to be fast.

All functions take a bool keep mask ``keep[M, K]`` (1 = kept; M = out-features = rows, K = in-features
= columns), ``N`` tokens in flight and a :class:`~simulator.hardware.Hardware`, and return plain dicts of
integers (cycles, bits).  Use it on small matrices (tests, hand checks); :mod:`simulator.engine` is the
fast path (numba statistics + the C++ core) and must agree with this file exactly.

Modes (written out in ``docs/simulator.md``):

``besa-compat``  section 2 — exactly how the BESA authors computed their ViTCoD table (hw_sim/ in
                 OpenGVLab/LLMPrune-BESA), quirks included; each quirk is marked ``QUIRK`` below next to
                 what ``corrected`` does instead.
``corrected``    the same compute-only model without the quirks.
``cycle``        section 3 — tiled dense engine + sparse engine with row->line assignment, double-
                 buffered memory, index formats, stalls.
``dense``        the same machine running every weight densely (no index traffic).
``nm``           a 2:4-style sparse tensor engine (hardware ``nm_n:nm_m``) with log2(m)-bit metadata.
"""

from __future__ import annotations

import heapq

import numpy as np

from simulator.hardware import BW_SCALE, GATHER_SCALE, NM_EFF_SCALE, Hardware


def cdiv(a: int, b: int) -> int:
    """Ceiling division of non-negative integers."""
    return -(-a // b)


# ============================================================================ besa-compat / corrected
def compat_try(counts: np.ndarray, rows: int, cols: int, tokens: int, tau: float, lines: int, height: int, sparse_nnz=None) -> dict:
    """One threshold try of the BESA authors' ``sparse_linear_simulate`` (after their ``reorder.calc``).

    ``counts[j]`` = kept entries of column j.  Returns cycles and the partition numbers.
    ``sparse_nnz(dense)``, when given, replaces nnz_s = E - D by what their column reordering leaves
    in the columns >= G (mode ``besa-code``, see :func:`reorder_sparse_nnz`).
    """
    # Their threshold test runs in torch: an int64 degree tensor compared with a Python float promotes
    # both to float32, so the threshold is float32(tau * M).  (Matters only when tau*M sits within
    # float32 rounding of an integer, e.g. tau = 0.7999999999999999, M = 5.)
    counts = np.asarray(counts, dtype=np.int64)
    dense = counts.astype(np.float32) > np.float32(tau * rows)
    G = int(dense.sum())
    D = int(counts[dense].sum())  # kept entries in dense ("global") columns
    E = int(counts.sum())  # all kept entries
    nnz_s = E - D if sparse_nnz is None or G == 0 else sparse_nnz(dense)
    den = nnz_s + G * rows
    # QUIRK (all-pruned matrix): their code divides by zero here; we define the ratio as 0.
    dense_ratio = (G * rows) / den if den else 0.0
    Ld = int(lines * dense_ratio)  # floor of a float, as int(my_PE.width * dense_ratio)
    Ls = lines - Ld
    # QUIRK (K, not M): the dense engine's work is K*G (inp.shape[0] = in-features), not M*G.
    # QUIRK (Ld = 0): with G > 0 but floor(64*ratio) = 0 the dense columns cost nothing.
    dense_cycles = cdiv(cols * tokens * G, Ld * height) if Ld > 0 else 0
    # QUIRK (Ls = 0): the sparse work then runs at one MAC per cycle (nnz_s*N cycles).
    sparse_cycles = cdiv(nnz_s * tokens, Ls * height) if Ls > 0 else nnz_s * tokens
    return {
        "cycles": max(dense_cycles, sparse_cycles),
        "dense_engine_cycles": dense_cycles,
        "sparse_engine_cycles": sparse_cycles,
        "G": G,
        "D": D,
        "E": E,
        "nnz_s": nnz_s,
        "lines_dense": Ld,
        "lines_sparse": Ls,
        "tau": tau,
    }


def _de_ratio_step(D: int, E: int) -> int:
    """+1 (raise tau), -1 (lower tau) or 0 (stop), from D/E as their torch code computes it."""
    if E == 0:
        return 0  # QUIRK: their code raises ZeroDivisionError on an all-pruned matrix; we stop.
    if D == 0:
        ratio = 0.0  # D is a Python int 0 when no column is dense: a float64 division
        return -1 if ratio <= 0.4 else 0
    # D is an int64 torch tensor, E a Python int: true division promotes to float32.
    ratio = np.float32(D) / np.float32(E)
    if ratio >= np.float32(0.6):
        return 1
    if ratio <= np.float32(0.4):
        return -1
    return 0


def compat_matrix(counts: np.ndarray, rows: int, cols: int, tokens: int, lines: int, height: int, sparse_nnz=None) -> dict:
    """Their ``process_layer_loop``: the retry loop over tau, keeping the minimum cycles seen.

    QUIRK (retry loop): tau starts at 0.5 and moves by +-0.1 (float accumulation, as in Python) while
    D/E >= 0.6 or <= 0.4; the loop stops after 5 adjustments, so at most 5 tries are evaluated (the
    5th adjustment is never evaluated).  ``corrected`` scans every partition instead.
    """
    tau, adjustments, best = 0.5, 0, None
    tries = 0
    while True:
        r = compat_try(counts, rows, cols, tokens, tau, lines, height, sparse_nnz)
        tries += 1
        if best is None or r["cycles"] < best["cycles"]:
            best = r
        step = _de_ratio_step(r["D"], r["E"])
        if step == 0:
            break
        tau = tau + 0.1 if step > 0 else tau - 0.1
        adjustments += 1
        if adjustments == 5:
            break
    return dict(best, tries=tries)


def compat_layer(keep: np.ndarray, tokens: int, hw: Hardware, code: bool = False) -> dict:
    """``besa-compat`` cycles of one matrix and their dense baseline, exactly as the BESA authors.

    QUIRK (patching): a wide matrix (K > M, e.g. down_proj 4096x11008) is cut into column patches of
    width M, each patch runs its own retry loop, and the patch minima are summed.  (Their code patches
    by name, down_proj only; the spec's rule K > M is the same thing for LLaMA-1/2 and also patches
    GQA k/v projections of LLaMA-70B.)
    ``code=True`` (mode ``besa-code``) also reproduces their column reordering bit for bit, see
    :func:`reorder_sparse_nnz`.
    QUIRK (dense baseline): the same formula on an all-kept matrix with G = K: ceil(K*K*N/(L*H)) per
    (patch) matrix, an undercount for tall matrices (gate/up 11008x4096 -> 4096 cycles, not 11008).
    """
    M, K = keep.shape
    L, H = hw.lines, hw.macs_per_line
    counts = keep.sum(axis=0)
    patches = [(b, min(K, b + M)) for b in range(0, K, M)] if K > M else [(0, K)]
    out = {
        "cycles": 0,
        "dense_cycles": 0,
        "dense_engine_cycles": 0,
        "sparse_engine_cycles": 0,
        "G": 0,
        "lines_dense": None,
        "lines_sparse": None,
        "tau": None,
        "tries": 0,
    }
    for b, e in patches:
        width = e - b
        fn = (lambda dense, part=keep[:, b:e]: reorder_sparse_nnz(part, dense)) if code else None
        r = compat_matrix(counts[b:e], M, width, tokens, L, H, fn)
        out["cycles"] += r["cycles"]
        out["dense_engine_cycles"] += r["dense_engine_cycles"]
        out["sparse_engine_cycles"] += r["sparse_engine_cycles"]
        out["G"] += r["G"]
        out["tries"] += r["tries"]
        if len(patches) == 1:
            out.update(lines_dense=r["lines_dense"], lines_sparse=r["lines_sparse"], tau=r["tau"])
        # dense baseline: G = K, nnz_s = 0 -> ratio 1 -> Ld = L; sparse side 0
        out["dense_cycles"] += cdiv(width * tokens * width, L * H)
    out["nnz"] = int(keep.sum())
    return out


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


def corrected_split(G: int, nnz_s: int, rows: int, lines: int) -> tuple[int, int]:
    """ViTCoD's proportional lane split, but every engine that has work gets at least one line."""
    if G == 0 and nnz_s == 0:
        return 0, 0
    if nnz_s == 0:
        return lines, 0
    if G == 0:
        return 0, lines
    if lines == 1:
        return 1, 1  # one line: the engines take turns (see corrected_layer)
    Ld = (lines * rows * G) // (rows * G + nnz_s)
    Ld = min(max(Ld, 1), lines - 1)
    return Ld, lines - Ld


def corrected_cycles(G: int, nnz_s: int, rows: int, tokens: int, lines: int, height: int) -> dict:
    """Compute-only cycles of one partition: dense work M*G*N on Ld lines, sparse nnz_s*N on Ls lines."""
    Ld, Ls = corrected_split(G, nnz_s, rows, lines)
    dc = cdiv(rows * G * tokens, Ld * height) if G else 0
    sc = cdiv(nnz_s * tokens, Ls * height) if nnz_s else 0
    cycles = dc + sc if (lines == 1 and G and nnz_s) else max(dc, sc)
    return {"cycles": cycles, "dense_engine_cycles": dc, "sparse_engine_cycles": sc, "G": G, "lines_dense": Ld, "lines_sparse": Ls}


def corrected_layer(keep: np.ndarray, tokens: int, hw: Hardware) -> dict:
    """``corrected``: the BESA-compat model without its quirks.

    * dense work M*G (not K*G); no patching (the formula holds for any shape);
    * the partition is the best of ALL "top-G columns" choices (G = 0..K, columns by kept count,
      ties by index) instead of 5 tries of +-0.1 on tau;
    * lines: proportional split, each engine with work gets >= 1 line;
    * dense baseline: the true ceil(M*K*N/P).
    """
    M, K = keep.shape
    L, H = hw.lines, hw.macs_per_line
    counts = keep.sum(axis=0)
    order = sorted(range(K), key=lambda j: (-int(counts[j]), j))
    E = int(counts.sum())
    best, D = None, 0
    for G in range(K + 1):
        if G:
            D += int(counts[order[G - 1]])
        r = corrected_cycles(G, E - D, M, tokens, L, H)
        if best is None or r["cycles"] < best["cycles"]:
            best = r
    return dict(best, dense_cycles=cdiv(M * K * tokens, L * H), nnz=E, tau=None, tries=K + 1)


# ============================================================================ cycle-level model
# Structure (docs/simulator.md has the derivation):
#   * a layer is Y[M x N] = W[M x K] X[K x N], output-stationary tiles of tm rows x tn tokens;
#   * the dense-column set (partition) is searched per layer over threshold candidates, jointly with
#     the lane split (Ld dense lines, Ls sparse lines, or both engines time-sharing all L lines) and
#     the tiling (the largest tiles that double-buffer); the fewest cycles win, then the fewest DRAM
#     bits, then the first in the enumeration order (candidate, tiling, option);
#   * per token tile the engines run in parallel; each pays the pipeline fill lambda once per
#     (row tile, token tile) it works on, every engine alike;
#   * memory and compute overlap over the layer (double-buffered streaming): cycles = max(C, DRAM).
def mem_cycles(bits: int, hw: Hardware) -> int:
    """DRAM cycles to move ``bits`` (0 for a compute-only machine)."""
    return cdiv(bits * BW_SCALE, hw.bw_bits_scaled) if hw.memory else 0


def half_buffer_bits(nbytes: int) -> int:
    """Bits one half of a double-buffered SRAM holds."""
    return nbytes * 4


def classes(total: int, tile: int) -> list[tuple[int, int]]:
    """``total`` split into tiles of ``tile``: (width, count) pairs, full tiles first."""
    out = []
    if total // tile:
        out.append((tile, total // tile))
    if total % tile:
        out.append((total % tile, 1))
    return out


def tilings(M: int, K: int, N: int, hw: Hardware, sparse: bool, own: bool) -> list[tuple[int, int]]:
    """Candidate (tm, tn) tiles, in search order.

    ``own=True``: a baseline's own best tiling — the hardware's tile overrides are ignored.  Row
    tiles: powers of two and multiples L*2^i of the line count, capped at M; token tiles: the
    largest that double-buffers (outputs tm*tn*acc_bits, activations tk*tn*act_bits) and the largest
    whose whole activation tile (K*tn) stays resident.  A tile fits when one chunk of tk columns
    (tk = tile_k, or one beat of m) double-buffers its weights (and, with ``sparse``, one bitmap bit
    per position in the index buffer).
    """
    L, m = hw.lines, hw.macs_per_line
    tk = m if own or not hw.tile_k else hw.tile_k
    wb, ab = half_buffer_bits(hw.weight_buffer_bytes), half_buffer_bits(hw.act_buffer_bytes)
    ob, ib = half_buffer_bits(hw.out_buffer_bytes), half_buffer_bits(hw.index_buffer_bytes)
    if hw.tile_m and not own:
        tms = [min(hw.tile_m, M)]
    else:
        tms, p = set(), 1
        while p < 2 * M:
            tms.add(min(M, p))
            tms.add(min(M, L * p))
            p *= 2
        tms = sorted(tms)
    out = []
    for tm in tms:
        if tm * tk * hw.weight_bits > wb or (sparse and tm * tk > ib):
            continue
        if hw.tile_n and not own:
            tns = [min(hw.tile_n, N)]
        else:
            tmax = min(N, ob // (tm * hw.acc_bits), ab // (tk * hw.act_bits))
            tns = sorted({tmax, min(tmax, ab // (K * hw.act_bits))} - {0})
        out += [(tm, tn) for tn in tns if tn >= 1 and tm * tn * hw.acc_bits <= ob and tk * tn * hw.act_bits <= ab]
    if not out:  # validate() guarantees the smallest tile fits; an override may still not
        out = [(1, 1)]
    return out


def traffic(M: int, K: int, N: int, tm: int, tn: int, W: int, I: int, hw: Hardware) -> dict:
    """DRAM bits by class for one tiling: ``W`` stored weight bits, ``I`` index bits of the layer.

    Two loop orders, the cheaper wins: row tiles outer (a row tile's weights / index stay on chip
    while all token tiles pass when they fit half their buffer, else they are re-read per token tile;
    activations re-read per row tile unless all K*N fit) or token tiles outer (activations of a token
    tile stay when K*tn fits; weights / index re-read per token tile unless the whole layer's fit).
    Outputs are written once.  An index that does not fit its buffer spills: it is re-read.
    """
    R, T = cdiv(M, tm), cdiv(N, tn)
    wb, ab, ib = (half_buffer_bits(x) for x in (hw.weight_buffer_bytes, hw.act_buffer_bytes, hw.index_buffer_bytes))
    A, O = K * N * hw.act_bits, M * N * hw.out_bits
    w_tile, i_tile = cdiv(W * tm, M) <= wb, cdiv(I * tm, M) <= ib
    row_outer = (W * (1 if w_tile else T), I * (1 if i_tile else T), A * (1 if A <= ab else R))
    tok_outer = (W * (1 if W <= wb else T), I * (1 if I <= ib else T), A * (1 if K * tn * hw.act_bits <= ab else R))
    best = min(row_outer, tok_outer, key=sum)
    return {"w": best[0], "i": best[1], "a": best[2], "o": O}


def index_bits(rows: int, ks: int, nnz: int, pads: int, hw: Hardware) -> int:
    """Index metadata bits of ``rows`` rows of the sparse columns (``ks`` of them, ``nnz`` kept).
    No sparse value, no metadata: the sparse engine is idle and its columns are skipped."""
    if ks == 0 or nnz == 0:
        return 0
    if hw.index_format == "bitmap":
        return rows * ks  # one bit per position
    if hw.index_format == "csr":
        return nnz * hw.index_bits + rows * hw.rowptr_bits  # a column index per value + a row pointer per row
    return (nnz + pads) * hw.rle_bits  # rle: a zero-run length per stored entry


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

    Dense engine: per (row tile, token tile) :func:`dense_beats` + lambda.  Sparse engine: rows balanced over the WHOLE matrix (``load`` =
    most beats per token on a line), per token tile ceil(load*tn*gather) + R*lambda.
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


def _finish(C: int, bits: dict, hw: Hardware) -> tuple[int, int, int]:
    Mem = mem_cycles(bits["w"] + bits["i"] + bits["a"] + bits["o"], hw)
    return max(C, Mem), Mem, C


def _tiling_result(cycles: int, Mem: int, C: int, bits: dict, tm: int, tn: int, N: int, dense_engine: int, sparse_engine: int, **extra) -> dict:
    """One tiling's result (the keys every memory-mode engine reports); ``_bits`` = its total DRAM
    bits, the tie-breaker between equal cycle counts, removed by the caller once the best is chosen."""
    return {
        "_bits": sum(bits.values()),
        "cycles": cycles,
        "compute_cycles": C,
        "memory_cycles": Mem,
        "stall_cycles": max(0, Mem - C),
        "dense_engine_cycles": dense_engine,
        "sparse_engine_cycles": sparse_engine,
        **extra,
        "tile_m": tm,
        "tile_n": tn,
        "token_tiles": cdiv(N, tn),
        "bits_weights": bits["w"],
        "bits_index": bits["i"],
        "bits_act": bits["a"],
        "bits_out": bits["o"],
    }


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
            cycles, Mem, C = _finish(C, bits, hw)
            if best is None or (cycles, sum(bits.values())) < (best["cycles"], best["_bits"]):
                best = _tiling_result(cycles, Mem, C, bits, tm, tn, N, dc, sc, lines_dense=Ld, lines_sparse=Ls, shared=int(shared))
    del best["_bits"]
    best["bound"] = "memory" if best["memory_cycles"] > best["compute_cycles"] else "compute"
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


def dram_bits(r: dict) -> int:
    """All DRAM bits of a result (the tie-break after cycles: less traffic, less energy)."""
    return r["bits_weights"] + r["bits_index"] + r["bits_act"] + r["bits_out"]


def lb_ideal(nnz: int, M: int, K: int, N: int, hw: Hardware) -> int:
    """Tight, partition-free lower bound: kept work on all P MACs, or kept values + activations +
    outputs once at full bandwidth (a free index) — whichever is larger."""
    return max(cdiv(nnz * N, hw.macs), mem_cycles(nnz * hw.weight_bits + K * N * hw.act_bits + M * N * hw.out_bits, hw))


def dense_layer(M: int, K: int, N: int, hw: Hardware) -> dict:
    """Dense baseline: every weight on the dense engine with all lines, no index traffic, and its
    OWN best tiling (independent of any tile override)."""
    r = evaluate_partition(M, K, N, K, [0] * M, 0, GATHER_SCALE, hw, tilings(M, K, N, hw, sparse=False, own=True))
    r["lb_ideal"] = lb_ideal(M * K, M, K, N, hw)
    return r


def nm_group_max(keep: np.ndarray, m: int) -> int:
    """Most kept entries in any group of m consecutive input features (the smallest covering n)."""
    M, K = keep.shape
    best = 0
    for i in range(M):
        for g0 in range(0, K, m):
            best = max(best, int(keep[i, g0 : g0 + m].sum()))
    return best


def nm_layer(M: int, K: int, N: int, group_max: int, hw: Hardware) -> dict:
    """The n:m engine (2:4 sparse tensor core style) on the same machine, own best tiling.

    It runs at ``n_use = max(hw.nm_n, group_max)`` of ``nm_m`` (a mask that is not hw-n:m compliant
    runs at its smallest covering n:m; n_use = m is the dense engine).  A tile's dense work
    (:func:`dense_beats`) scales by n_use/m (rounded up; exactly half for 2:4 when even), plus
    lambda; weights are n_use values per group of m plus ceil(log2 m) metadata bits each.

    ``hw.nm_efficiency`` < 1 (real n:m kernels, e.g. a GPU's sparse tensor-core GEMMs, reach only a
    fraction of the ideal engine's rates): the best tiling of the ideal engine is kept and its compute
    and memory cycles are each stretched to ceil(ideal * NM_EFF_SCALE / nm_eff_scaled).
    """
    n_use = max(hw.nm_n, group_max, 1)
    if n_use >= hw.nm_m:
        return dict(dense_layer(M, K, N, hw), nm_n=hw.nm_m)
    groups = cdiv(K, hw.nm_m)
    W = M * groups * n_use * hw.weight_bits
    I = M * groups * n_use * hw.nm_meta_bits
    best = None
    for tm, tn in tilings(M, K, N, hw, sparse=False, own=True):
        C = 0
        for tn_j, cnt in classes(N, tn):
            for t, c in classes(M, tm):
                C += cnt * c * (cdiv(dense_beats(t, tn_j, K, hw.lines, hw.macs_per_line) * n_use, hw.nm_m) + hw.pipeline_fill)
        bits = traffic(M, K, N, tm, tn, W, I, hw)
        cycles, Mem, C = _finish(C, bits, hw)
        if best is None or (cycles, sum(bits.values())) < (best["cycles"], best["_bits"]):
            best = _tiling_result(cycles, Mem, C, bits, tm, tn, N, C, 0)
    del best["_bits"]
    eff = hw.nm_eff_scaled
    if eff < NM_EFF_SCALE:
        C, Mem = (cdiv(best[k] * NM_EFF_SCALE, eff) for k in ("compute_cycles", "memory_cycles"))
        best.update(cycles=max(C, Mem), compute_cycles=C, memory_cycles=Mem, stall_cycles=max(0, Mem - C), dense_engine_cycles=C)
    best["bound"] = "memory" if best["memory_cycles"] > best["compute_cycles"] else "compute"
    best.update(nm_n=n_use, macs=M * groups * n_use * N, index_entries=M * groups * n_use * best["token_tiles"])
    return best


def partition_candidates(counts: np.ndarray, rows: int, hw: Hardware) -> list[tuple[float, np.ndarray]]:
    """Dense-column sets to search, by ascending size: (tau, bool dense[K]).

    ``partition = "tau"``: the one set {count > tau*M}.  ``optimal``: the fully kept columns alone
    (reported as tau = 1), then {16*count > k*M} for k = 15 .. 0 (tau = k/16); equal sets are tried
    once (the highest tau names them).  A fully kept column is in every set: streaming it through the
    sparse engine costs the same beats plus index metadata.
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


def cycle_layer(keep: np.ndarray, tokens: int, hw: Hardware) -> dict:
    """``cycle`` mode on one matrix, from the bool keep mask: the search over partition candidates.

    Returns the best candidate's :func:`evaluate_partition` result plus ``tau`` (the chosen
    threshold), ``nnz``, ``lb_ideal`` (partition-free, <= cycles).
    """
    keep = np.asarray(keep, dtype=bool)
    M, K = keep.shape
    counts = keep.sum(axis=0)
    best = None
    for tau, dense in partition_candidates(counts, M, hw):
        sparse = keep[:, ~dense]
        row_sparse = [int(x) for x in sparse.sum(axis=1)]
        pads = sum(rle_pads(sparse[i], hw.rle_bits) for i in range(M)) if hw.index_format == "rle" else 0
        gs = bank_gather_scaled(keep, ~dense, hw)
        tiles = tilings(M, K, tokens, hw, sparse=bool((~dense).any()), own=False)
        r = evaluate_partition(M, K, tokens, int(dense.sum()), row_sparse, pads, gs, hw, tiles)
        if best is None or (r["cycles"], dram_bits(r)) < (best["cycles"], dram_bits(best)):
            best = dict(r, tau=tau)
    nnz = int(keep.sum())
    best.update(nnz=nnz, lb_ideal=lb_ideal(nnz, M, K, tokens, hw))
    return best


def attention_block(hidden: int, kv_dim: int, tokens: int, context: int, batch: int, hw: Hardware) -> dict:
    """One transformer block's attention for ``batch`` sequences, each adding ``tokens`` new tokens
    after ``context`` cached ones; dense, on all lines.

    Keys attended per sequence (causal): sum_{i=1..N} (context + i) = N*context + N(N+1)/2.  MACs =
    2 * hidden * keys (QK^T and AV; heads * head_dim = hidden, so GQA changes only the KV bytes).
    DRAM: the KV cache of context positions read, the N new K/V entries written (kv_dim each, at
    ``kv_bits``), Q read and the attention output written (hidden * N at act/out width).
    cycles = max(ceil(MACs / P) + lambda, DRAM cycles).
    """
    keys = tokens * context + tokens * (tokens + 1) // 2
    macs = 2 * hidden * keys * batch
    kv = 2 * kv_dim * (context + tokens) * hw.kv_bits * batch
    act = hidden * tokens * batch * hw.act_bits
    out = hidden * tokens * batch * hw.out_bits
    C = cdiv(macs, hw.macs) + hw.pipeline_fill
    Mem = mem_cycles(kv + act + out, hw)
    return {
        "cycles": max(C, Mem),
        "compute_cycles": C,
        "memory_cycles": Mem,
        "stall_cycles": max(0, Mem - C),
        "bound": "memory" if Mem > C else "compute",
        "bits_kv": kv,
        "bits_act": act,
        "bits_out": out,
        "bits_weights": 0,
        "bits_index": 0,
        "macs": macs,
        "index_entries": 0,
    }


def embedding_lookup(hidden: int, tokens: int, hw: Hardware) -> dict:
    """Embedding rows of the tokens in flight: memory only (hidden weights per token)."""
    bits = hidden * tokens * hw.weight_bits
    Mem = mem_cycles(bits, hw)
    return {
        "cycles": Mem,
        "compute_cycles": 0,
        "memory_cycles": Mem,
        "stall_cycles": Mem,
        "bound": "memory",
        "bits_weights": bits,
        "bits_index": 0,
        "bits_act": 0,
        "bits_out": 0,
        "bits_kv": 0,
        "macs": 0,
        "index_entries": 0,
    }


ENERGY_CLASSES = ("dram", "sram", "mac", "index")


def energy_fj(r: dict, hw: Hardware) -> dict:
    """Energy of one result by class, integer femtojoules (monotone in every byte and MAC count).

    dram: every DRAM bit; sram: each byte written into its buffer once and read out once (weights ->
    weight buffer, index -> index buffer, activations and KV -> activation buffer, outputs -> output
    buffer); mac: MACs executed (the dense engine multiplies the zeros of its columns too); index:
    index entries decoded (per stored sparse value per token tile).
    """
    bits = {"w": r.get("bits_weights", 0), "i": r.get("bits_index", 0), "a": r.get("bits_act", 0) + r.get("bits_kv", 0), "o": r.get("bits_out", 0)}
    buf = {"w": "e_wbuf_pj_per_byte", "i": "e_ibuf_pj_per_byte", "a": "e_abuf_pj_per_byte", "o": "e_obuf_pj_per_byte"}
    dram = cdiv(sum(bits.values()) * hw.energy_fj("e_dram_pj_per_byte"), 8) if hw.memory else 0
    sram = sum(cdiv(2 * b * hw.energy_fj(buf[k]), 8) for k, b in bits.items())
    out = {"dram": dram, "sram": sram, "mac": r.get("macs", 0) * hw.energy_fj("e_mac_pj"), "index": r.get("index_entries", 0) * hw.energy_fj("e_index_pj")}
    out["total"] = sum(out.values())
    return out


def split_compute_cycles(dense_work: int, sparse_work: int, lines_dense: int, lines_sparse: int, height: int, tokens: int) -> int:
    """Compute part of a lane split without tiling: max(ceil(Wd*N/(Ld*m)), ceil(Ws*N/(Ls*m)))."""
    dc = cdiv(dense_work * tokens, lines_dense * height) if dense_work else 0
    sc = cdiv(sparse_work * tokens, lines_sparse * height) if sparse_work else 0
    return max(dc, sc)
