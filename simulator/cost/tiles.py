"""Tiles, DRAM traffic and index bits of one layer ``Y[M x N] = W[M x K] X[K x N]`` (cost library).

A layer runs in output-stationary tiles of ``tm`` rows x ``tn`` tokens; every operand buffer is
double-buffered, so one half holds ``bytes * 4`` bits.  Memory and compute overlap over the layer:
its cycles are ``max(compute, DRAM)`` (:mod:`simulator.cost.partition`).
"""

from __future__ import annotations

from simulator.hardware import BW_SCALE, Hardware


def cdiv(a: int, b: int) -> int:
    """Ceiling division of non-negative integers."""
    return -(-a // b)


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


def group_bits(M: int, K: int, hw: Hardware) -> int:
    """Quantization metadata of an M x K weight matrix: one scale + zero point per ``group_size``
    input weights of each row, counted over the dense shape (a group keeps its metadata whatever its
    sparsity); 0 without groups."""
    return M * cdiv(K, hw.group_size) * hw.group_meta_bits if hw.group_size else 0


def dequant_cycles(stored: int, T: int, hw: Hardware) -> int:
    """Cycles the dequantisation units need for ``stored`` quantized weights read once per token tile
    (``T`` tiles); they run beside the MACs, so a tiling's compute is at least this.  0 without groups
    or with ``dequant_per_cycle = 0`` (units that keep pace)."""
    return cdiv(stored * T, hw.dequant_per_cycle) if hw.group_size and hw.dequant_per_cycle else 0


def sram_bits(N: int, G: int, S: int, pads: int, beats: int, tm: int, tn: int, M: int, W: int, I: int, bits: dict, hw: Hardware) -> dict:
    """SRAM bits moved (written + read) per operand buffer by one tiling's loop nest.

    ``beats`` = beats of m values per token over all rows (the dense columns' M*ceil(G/m) plus the
    sparse rows' sum of ceil(kept/m)); W / I = stored weight (metadata included) / index bits.
    Every DRAM bit is written into its buffer once.  Reads: the stored weights and index once per
    token tile (a weight stays in its MAC for the tn tokens of a tile); activations of the dense
    columns once per row tile (broadcast to every line), of the sparse engine once per stored value
    per token (a gather); partial sums (acc_bits) read and written back once per beat per token
    (output-stationary tiles accumulate in the output buffer), and the outputs read once to DRAM.
    """
    T, R = cdiv(N, tn), cdiv(M, tm)
    return {
        "sram_weights": bits["w"] + W * T,
        "sram_index": bits["i"] + I * T,
        "sram_act": bits["a"] + bits.get("kv", 0) + hw.act_bits * N * (G * R + S + pads),
        "sram_out": 2 * hw.acc_bits * N * beats + bits["o"],
    }


def dram_bits(r: dict) -> int:
    """All DRAM bits of a result (the tie-break after cycles: less traffic, less energy)."""
    return r["bits_weights"] + r["bits_index"] + r["bits_act"] + r["bits_out"]


def overlap(C: int, bits: dict, hw: Hardware) -> tuple[int, int, int]:
    """(cycles, DRAM cycles, compute cycles) of one tiling: compute ``C`` overlapped with moving ``bits``."""
    Mem = mem_cycles(bits["w"] + bits["i"] + bits["a"] + bits["o"], hw)
    return max(C, Mem), Mem, C


def tiling_result(cycles: int, Mem: int, C: int, bits: dict, tm: int, tn: int, N: int, dense_engine: int, sparse_engine: int, **extra) -> dict:
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


def bound_of(r: dict) -> str:
    """``memory`` when the layer waits for DRAM longer than it computes, else ``compute``."""
    return "memory" if r["memory_cycles"] > r["compute_cycles"] else "compute"
