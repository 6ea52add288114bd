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

from simulator.hardware import BW_SCALE, GATHER_SCALE, Hardware


def cdiv(a: int, b: int) -> int:
    """Ceiling division of non-negative integers."""
    return -(-a // b)


# ============================================================================ besa-compat / corrected
def compat_try(counts: np.ndarray, rows: int, cols: int, tokens: int, tau: float, lines: int, height: int,
               sparse_nnz=None) -> dict:
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
    return {"cycles": max(dense_cycles, sparse_cycles), "dense_engine_cycles": dense_cycles,
            "sparse_engine_cycles": sparse_cycles, "G": G, "D": D, "E": E, "nnz_s": nnz_s,
            "lines_dense": Ld, "lines_sparse": Ls, "tau": tau}


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


def compat_matrix(counts: np.ndarray, rows: int, cols: int, tokens: int, lines: int, height: int,
                  sparse_nnz=None) -> dict:
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
    out = {"cycles": 0, "dense_cycles": 0, "dense_engine_cycles": 0, "sparse_engine_cycles": 0, "G": 0,
           "lines_dense": None, "lines_sparse": None, "tau": None, "tries": 0}
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
    return int(new_kept[:, int(dense.sum()):].sum())


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
    return {"cycles": cycles, "dense_engine_cycles": dc, "sparse_engine_cycles": sc, "G": G,
            "lines_dense": Ld, "lines_sparse": Ls}


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
def dense_partition(keep: np.ndarray, tau: float) -> np.ndarray:
    """ViTCoD's offline partition: column j goes to the dense engine when its kept count > tau*M."""
    M = keep.shape[0]
    return keep.sum(axis=0) > tau * M


def rle_pads(row_keep: np.ndarray, bits: int) -> int:
    """Padding entries run-length coding needs for one row (of the sparse columns).

    Each kept value stores the count of zeros before it in ``bits`` bits (max R = 2**bits - 1); a longer
    gap is bridged by explicit zero entries, each covering R zeros plus itself (R + 1 positions).
    Trailing zeros need nothing (row length is known).
    """
    R1 = (1 << bits)  # R + 1
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


def dense_tile_cycles(tm: int, tn: int, width: int, lines: int, hw: Hardware) -> int:
    """Dense engine on a tm x width block for tn tokens: K-chunks of tile_k, each
    ceil(tm/lines)*tn*ceil(tk/m) + lambda (each line owns output rows)."""
    total = 0
    for k0 in range(0, width, hw.tile_k):
        tk = min(hw.tile_k, width - k0)
        total += cdiv(tm, lines) * tn * cdiv(tk, hw.macs_per_line) + hw.pipeline_fill
    return total


def mem_cycles(bits: int, hw: Hardware) -> int:
    """DRAM cycles to move ``bits`` (0 for a compute-only machine)."""
    return cdiv(bits * BW_SCALE, hw.bw_bits_scaled) if hw.memory else 0


def _tiles(M: int, N: int, hw: Hardware):
    for r0 in range(0, M, hw.tile_m):
        for n0 in range(0, N, hw.tile_n):
            yield r0, min(M, r0 + hw.tile_m), min(hw.tile_n, N - n0)


def _pipeline(tiles) -> dict:
    """Double-buffered tiles: each takes max(compute, memory) — tile i+1 loads while tile i computes
    (the first load overlaps the previous layer).  ``tiles``: (compute, memory) pairs."""
    total = stall = csum = msum = 0
    for c, m in tiles:
        total += max(c, m)
        stall += max(0, m - c)
        csum += c
        msum += m
    return {"cycles": total, "stall_cycles": stall, "compute_cycles": csum, "memory_cycles": msum,
            "bound": "memory" if msum > csum else "compute"}


def dense_layer(M: int, K: int, N: int, hw: Hardware) -> dict:
    """Dense baseline on the same machine: every weight, all lines, no index traffic."""
    tiles, wb, ab, ob = [], 0, 0, 0
    for r0, r1, tn in _tiles(M, N, hw):
        tm = r1 - r0
        c = dense_tile_cycles(tm, tn, K, hw.lines, hw)
        w, a, o = tm * K * hw.weight_bits, K * tn * hw.act_bits, tm * tn * hw.out_bits
        wb, ab, ob = wb + w, ab + a, ob + o
        tiles.append((c, mem_cycles(w + a + o, hw)))
    res = _pipeline(tiles)
    res.update(dense_engine_cycles=res["compute_cycles"], sparse_engine_cycles=0, bits_weights=wb, bits_index=0,
               bits_act=ab, bits_out=ob)
    return res


def nm_group_max(keep: np.ndarray, m: int) -> int:
    """Most kept entries in any group of m consecutive input features (the smallest covering n)."""
    M, K = keep.shape
    best = 0
    for i in range(M):
        for g0 in range(0, K, m):
            best = max(best, int(keep[i, g0:g0 + m].sum()))
    return best


def nm_layer(M: int, K: int, N: int, group_max: int, hw: Hardware) -> dict:
    """The n:m engine (2:4 sparse tensor core style) on the same machine.

    It runs at ``n_use = max(hw.nm_n, group_max)`` of ``nm_m`` (a mask that is not hw-n:m compliant
    is reported at its smallest covering n:m).  Each dense K-chunk's cycles scale by n_use/m, rounded
    up — exactly half for 2:4 when the dense chunk cycles are even; weights are stored as n_use values
    per group plus ceil(log2 m) metadata bits each.  n_use = m is the dense engine (no metadata).
    """
    n_use = max(hw.nm_n, group_max, 1)
    if n_use >= hw.nm_m:
        res = dense_layer(M, K, N, hw)
        res["nm_n"] = hw.nm_m
        return res
    groups = cdiv(K, hw.nm_m)
    tiles, wb, ib, ab, ob = [], 0, 0, 0, 0
    for r0, r1, tn in _tiles(M, N, hw):
        tm = r1 - r0
        c = 0
        for k0 in range(0, K, hw.tile_k):
            tk = min(hw.tile_k, K - k0)
            chunk = cdiv(tm, hw.lines) * tn * cdiv(tk, hw.macs_per_line) + hw.pipeline_fill
            c += cdiv(chunk * n_use, hw.nm_m)
        w = tm * groups * n_use * hw.weight_bits
        i = tm * groups * n_use * hw.nm_meta_bits
        a, o = K * tn * hw.act_bits, tm * tn * hw.out_bits
        wb, ib, ab, ob = wb + w, ib + i, ab + a, ob + o
        tiles.append((c, mem_cycles(w + i + a + o, hw)))
    res = _pipeline(tiles)
    res.update(dense_engine_cycles=res["compute_cycles"], sparse_engine_cycles=0, bits_weights=wb, bits_index=ib,
               bits_act=ab, bits_out=ob, nm_n=n_use)
    return res


def index_bits(tm: int, ks: int, nnz: int, pads: int, hw: Hardware) -> int:
    """Index metadata bits of a tm-row block of the sparse columns (``ks`` of them, ``nnz`` kept)."""
    if ks == 0:
        return 0
    if hw.index_format == "bitmap":
        return tm * ks  # one bit per position
    if hw.index_format == "csr":
        return nnz * hw.index_bits + tm * hw.rowptr_bits  # a column index per value + a row pointer per row
    return (nnz + pads) * hw.rle_bits  # rle: a zero-run length per stored entry


def cycle_from_stats(M: int, K: int, N: int, G: int, row_sparse: list[int], row_pads: list[int], nnz: int,
                     hw: Hardware) -> dict:
    """The cycle-level model from the partition statistics (what the C++ engine receives).

    ``G`` dense columns (processed densely by the dense engine), ``row_sparse[i]`` kept entries of row i
    in the other columns, ``row_pads[i]`` rle padding entries of row i, ``nnz`` all kept entries.
    """
    L, m = hw.lines, hw.macs_per_line
    Ks = K - G
    nnz_s = sum(row_sparse)
    seq = L == 1 and G > 0 and nnz_s > 0  # one line: the engines take turns
    # per row tile: sparse costs (beats per token), kept, pads — independent of the token tile
    tiles = list(_tiles(M, N, hw))
    costs = {r0: [cdiv(row_sparse[i], m) for i in range(r0, r1)] for r0, r1, _ in tiles}

    mem, bits = [], {"w": 0, "i": 0, "a": 0, "o": 0}
    for r0, r1, tn in tiles:
        tm = r1 - r0
        s, p = sum(row_sparse[r0:r1]), sum(row_pads[r0:r1])
        w = tm * G * hw.weight_bits + (s + p) * hw.weight_bits
        i = index_bits(tm, Ks, s, p, hw)
        a, o = K * tn * hw.act_bits, tm * tn * hw.out_bits
        for k, v in zip("wiao", (w, i, a, o)):
            bits[k] += v
        mem.append(mem_cycles(w + i + a + o, hw))

    def run(Ld: int, Ls: int) -> dict:
        pairs, dsum, ssum = [], 0, 0
        for (r0, r1, tn), mc in zip(tiles, mem):
            tm = r1 - r0
            cd = dense_tile_cycles(tm, tn, G, Ld, hw) if G > 0 else 0
            cs = 0
            if sum(row_sparse[r0:r1]) > 0:
                load = max_line_load(costs[r0], Ls, hw.assign)
                cs = cdiv(load * tn * hw.gather_scaled, GATHER_SCALE) + hw.pipeline_fill
            dsum += cd
            ssum += cs
            pairs.append((cd + cs if seq else max(cd, cs), mc))
        res = _pipeline(pairs)
        res.update(dense_engine_cycles=dsum, sparse_engine_cycles=ssum, lines_dense=Ld, lines_sparse=Ls)
        return res

    if G == 0 and nnz_s == 0:
        best = run(0, 0)
    elif nnz_s == 0:
        best = run(L, 0)
    elif G == 0:
        best = run(0, L)
    elif seq:
        best = run(1, 1)
    elif hw.split == "proportional":
        Ld = min(max((L * M * G) // (M * G + nnz_s), 1), L - 1)
        best = run(Ld, L - Ld)
    else:  # optimal: scan every split, keep the first with the fewest total cycles
        best = None
        for Ld in range(1, L):
            r = run(Ld, L - Ld)
            if best is None or r["cycles"] < best["cycles"]:
                best = r
    P = hw.macs
    idx_once = sum(index_bits(r1 - r0, Ks, sum(row_sparse[r0:r1]), sum(row_pads[r0:r1]), hw)
                   for r0, r1, _ in _tiles(M, 1, hw))
    floor_bits = nnz * hw.weight_bits + idx_once + K * N * hw.act_bits + M * N * hw.out_bits
    F = mem_cycles(floor_bits, hw)
    best.update(G=G, nnz=nnz, nnz_s=nnz_s, bits_weights=bits["w"], bits_index=bits["i"], bits_act=bits["a"],
                bits_out=bits["o"], lb_ideal=max(cdiv(nnz * N, P), F), lb_split=max(cdiv((M * G + nnz_s) * N, P), F),
                memory_floor=F)
    return best


def cycle_layer(keep: np.ndarray, tokens: int, hw: Hardware) -> dict:
    """``cycle`` mode on one matrix, from the bool keep mask (the reference statistics)."""
    keep = np.asarray(keep, dtype=bool)
    M, K = keep.shape
    dense = dense_partition(keep, hw.tau)
    sparse_part = keep[:, ~dense]  # (M, Ks): the sparse engine's columns, in original order
    row_sparse = [int(x) for x in sparse_part.sum(axis=1)]
    pads = [rle_pads(sparse_part[i], hw.rle_bits) for i in range(M)] if hw.index_format == "rle" else [0] * M
    return cycle_from_stats(M, K, tokens, int(dense.sum()), row_sparse, pads, int(keep.sum()), hw)


def split_compute_cycles(dense_work: int, sparse_work: int, lines_dense: int, lines_sparse: int, height: int,
                         tokens: int) -> int:
    """Compute part of a lane split without tiling: max(ceil(Wd*N/(Ld*m)), ceil(Ws*N/(Ls*m)))."""
    dc = cdiv(dense_work * tokens, lines_dense * height) if dense_work else 0
    sc = cdiv(sparse_work * tokens, lines_sparse * height) if sparse_work else 0
    return max(dc, sc)
