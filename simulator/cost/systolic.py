"""A systolic-array GEMM model in closed form that reproduces SCALE-Sim v3 (``scalesim`` 3.0.0).

One GEMM layer: ``M`` tokens (ifmap rows), ``N`` output features (filters), ``K`` input features (the
reduction), on an ``array_rows`` x ``array_cols`` (R x C) array of MACs, dataflow ``ws`` / ``os`` / ``is``
(weight / output / input stationary), dense or SCALE-Sim's N:M (``n:m``: the weights keep n of every m
consecutive input features and are compacted along K, its ``ellpack_block`` representation).  Units: cycles
of the array clock; SRAM counts are words (one operand element each, SCALE-Sim's word).

Derivation (SCALE-Sim's ``systolic_compute_{ws,os,is}.py`` build one demand matrix per operand, one row per
cycle; its CALC bandwidth mode never stalls, so the layer takes as many cycles as the matrices have rows):

* **Compaction** (``operand_matrix.create_filter_matrix``): n:m keeps the first n of every m weights along K
  and packs them, so the reduction is ``K' = n * (K // m) + min(K % m, n)``; dense ``K' = K``.
* **Folds**: the operand held stationary is cut into R x C tiles ("folds"); each fold is a fixed number of
  demand-matrix rows, one per cycle:

  ====  ==========================  ===================================  ==================================
  df    stationary (rows x cols)    folds                                 cycles per fold
  ====  ==========================  ===================================  ==================================
  ws    weights  K' x N             ceil(K'/R) * ceil(N/C)                R preload + M stream + (R-1) skew
                                                                          + (C-1) drain = 2R + C + M - 2
  os    outputs  M x N              ceil(M/R) * ceil(N/C)                 K' stream + (R-1) + (C-1)
                                                                          = K' + R + C - 2
  is    inputs   K' x M             ceil(K'/R) * ceil(M/C)                2R + C + N - 2 (as ws, N streams)
  ====  ==========================  ===================================  ==================================

* **Total Cycles** (COMPUTE_REPORT "Total Cycles", CALC mode) = folds * cycles_per_fold - 1: SCALE-Sim reports
  the cycle index of the last demand row (``max(ofmap_serviced_cycles)`` with rows issued at cycles 0, 1, ...),
  one less than the count.  Folds never overlap (no double-buffered weight preload), and a partial fold costs
  as much as a full one.
* **SRAM reads / writes** (DETAILED_ACCESS_REPORT), the elements of each operand's demand matrices:

  ====  =============================  ======================  =======================================
  df    ifmap reads                    filter reads            ofmap writes
  ====  =============================  ======================  =======================================
  ws    ceil(N/C) * M * K' (* m/n)     K' * N                  ceil(K'/R) * M * N
  os    ceil(N/C) * M * K'             ceil(M/R) * K' * N      M * N + folds * (R + C)
  is    K' * M                         ceil(M/C) * K' * N      ceil(K'/R) * M * N
  ====  =============================  ======================  =======================================

  Two SCALE-Sim quirks are reproduced on purpose: under n:m, weight-stationary ifmap reads are multiplied by
  m/n ("a single block of input is shared among M/N rows"; a float in its report), the other dataflows'
  are not; output-stationary ofmap writes add ``R + C`` per fold (``ofmap_writes += shape[0] + shape[1]``
  after the real count).  Partial sums written per row fold are counted as writes (ws, is).
* **Metadata** (SPARSE_REPORT "Filter Metadata Storage", 32-bit words): ``K' * N * ceil(log2 m) / 32``.

The USER bandwidth mode (DRAM at a given words/cycle, double-buffered SRAMs) is modelled by :func:`user_mode`,
a roofline of the array's cycles against each operand's DRAM stream: equal to SCALE-Sim where every operand
fits half its SRAM (no stall at any bandwidth), a lower bound of its event simulation elsewhere (see there).

Masks (the ``systolic`` mode, :func:`systolic_mode_layer`): an unstructured keep mask runs at its smallest
covering n:m over the preset's block ``nm_m`` (:func:`covering_nm`, from the mask statistic ``group_max``;
dense if none); SCALE-Sim itself reads no masks, only the n:m ratio of each layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from besa_common.errors import UserError

DATAFLOWS = ("ws", "os", "is")


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _check(rows: int, cols: int, dataflow: str, M: int, N: int, K: int, nm: tuple[int, int] | None) -> None:
    for name, v in (("array_rows", rows), ("array_cols", cols), ("M (tokens)", M), ("N (out features)", N), ("K (in features)", K)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise UserError(f"systolic: {name} must be a positive integer, got {v!r}")
    if dataflow not in DATAFLOWS:
        raise UserError(f"systolic: dataflow must be one of {', '.join(DATAFLOWS)}, got {dataflow!r}")
    if nm is not None:
        n, m = nm
        if not (isinstance(n, (int, np.integer)) and isinstance(m, (int, np.integer)) and 1 <= n <= m):
            raise UserError(f"systolic: n:m needs 1 <= n <= m, got {n}:{m}")


def compacted_reduction(K: int, nm: tuple[int, int] | None) -> int:
    """K' (input features after SCALE-Sim's n:m compaction): n per full block of m, min(K % m, n) in the last."""
    if nm is None:
        return K
    n, m = nm
    return n * (K // m) + min(K % m, n)


@dataclass(frozen=True)
class SystolicResult:
    """One GEMM layer on a systolic array, SCALE-Sim v3 CALC mode.  Cycles of the array clock; counts in words."""

    cycles: int  # SCALE-Sim "Total Cycles" = folds * cycles_per_fold - 1
    folds: int
    cycles_per_fold: int  # demand rows per fold (fill, stream, drain; see the module docstring)
    reduction: int  # K' after n:m compaction (= K dense)
    sram_ifmap_reads: int | float  # a float only where SCALE-Sim's own is (ws under n:m with m/n not integral)
    sram_filter_reads: int
    sram_ofmap_writes: int
    metadata_words: float  # ellpack_block metadata, 32-bit words (0 dense)
    macs: int  # useful multiply-accumulates, M * N * K'
    pes: int  # MACs in the array, R * C

    @property
    def utilization(self) -> float:
        """Useful MACs over PEs x (cycles + 1).  SCALE-Sim's "Overall Util %" is 100 x MACs / (PEs x cycles),
        on the reported (off by one) cycles, and with the DENSE MAC count even under n:m."""
        return self.macs / (self.pes * self.folds * self.cycles_per_fold)


def _num(x: float) -> int | float:
    return int(x) if float(x).is_integer() else x


def systolic_layer(rows: int, cols: int, dataflow: str, M: int, N: int, K: int, nm: tuple[int, int] | None = None) -> SystolicResult:
    """Cycles and SRAM traffic of one GEMM (M tokens x K in -> N out) on an R x C array; SCALE-Sim v3 CALC mode.

    ``nm = (n, m)`` runs SCALE-Sim's n:m (weights compacted along K); ``None`` is dense.  Raises
    :class:`UserError` on a bad argument.  Closed form, O(1).
    """
    _check(rows, cols, dataflow, M, N, K, nm)
    R, C = int(rows), int(cols)
    M, N, K = int(M), int(N), int(K)
    Kc = compacted_reduction(K, nm)
    if dataflow == "ws":
        row_folds, col_folds = _cdiv(Kc, R), _cdiv(N, C)
        per_fold = 2 * R + C + M - 2
        ifmap = col_folds * M * Kc
        if nm is not None:
            ifmap = _num(ifmap * (nm[1] / nm[0]))
        filt = Kc * N
        ofmap = row_folds * M * N
    elif dataflow == "os":
        row_folds, col_folds = _cdiv(M, R), _cdiv(N, C)
        per_fold = Kc + R + C - 2
        ifmap = col_folds * M * Kc
        filt = row_folds * Kc * N
        ofmap = M * N + row_folds * col_folds * (R + C)
    else:  # "is"
        row_folds, col_folds = _cdiv(Kc, R), _cdiv(M, C)
        per_fold = 2 * R + C + N - 2
        ifmap = Kc * M
        filt = col_folds * Kc * N
        ofmap = row_folds * M * N
    folds = row_folds * col_folds
    meta = 0.0 if nm is None else Kc * N * math.ceil(math.log2(nm[1])) / 32
    return SystolicResult(
        cycles=folds * per_fold - 1,
        folds=folds,
        cycles_per_fold=per_fold,
        reduction=Kc,
        sram_ifmap_reads=ifmap,
        sram_filter_reads=filt,
        sram_ofmap_writes=ofmap,
        metadata_words=meta,
        macs=M * N * Kc,
        pes=R * C,
    )


# --------------------------------------------------------------------------------------------------
# USER bandwidth mode: DRAM at a given rate
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserModeResult:
    """One layer with DRAM at ``bandwidth`` words/cycle behind double-buffered SRAMs (SCALE-Sim's USER mode)."""

    compute_cycles: int  # CALC "Total Cycles" (the array alone)
    stall_cycles: int  # cycles the array waits for DRAM
    dram_words: dict[str, int]  # words each operand moves after the free first fill (ifmap, filter, ofmap)

    @property
    def total_cycles(self) -> int:
        """SCALE-Sim's USER "Total Cycles" is exactly CALC's plus "Stall Cycles" (checked on every golden)."""
        return self.compute_cycles + self.stall_cycles


def user_mode(
    rows: int,
    cols: int,
    dataflow: str,
    M: int,
    N: int,
    K: int,
    nm: tuple[int, int] | None,
    bandwidth: int,
    sram_kb: tuple[int, int, int],
) -> UserModeResult:
    """A roofline of the array against each operand's DRAM stream, SCALE-Sim's USER-mode conventions.

    ``bandwidth``: DRAM words per cycle of every interface; ``sram_kb``: ifmap, filter, ofmap SRAM sizes in kB
    (SCALE-Sim: 1-byte words; the read SRAMs are double-buffered halves, ``active_buf_frac = 0.5``).

    * The first fill of each read SRAM (its active half, ceil(kB x 1024 / 2) words) is free: SCALE-Sim issues it
      at negative cycles, before the array starts, and "Total Cycles" does not count it.  An operand whose
      unique words fit in that half never touches DRAM again, so the layer never stalls whatever the bandwidth
      (exactly SCALE-Sim's 0 on every such golden, bandwidth 1 included).
    * An operand that does not fit streams every SRAM read beyond the first fill from DRAM (no reuse across the
      refill); the ofmap drains the writes beyond its SRAM.  Each stream takes ceil(words / bandwidth) cycles
      overlapped with compute, so ``stall = max(0, max_op stream - compute)``, where compute = CALC cycles + 1.

    Not SCALE-Sim's event simulation, which, once an operand exceeds half its SRAM, (a) advances its window
    only forward over the prefetch order, so a demand just behind the window (ws flips every weight fold)
    re-fetches the whole ring, and (b) counts each stall twice (``offset += p`` then again when ``p > 0``,
    read_buffer.service_reads).  Its stalls are then far larger and not monotone in the bandwidth; this model
    gives a lower bound there (checked on every golden: tests/simulator/golden/scalesim/README.md).
    """
    base = systolic_layer(rows, cols, dataflow, M, N, K, nm)
    if isinstance(bandwidth, bool) or not isinstance(bandwidth, (int, np.integer)) or bandwidth < 1:
        raise UserError(f"systolic: bandwidth must be a positive integer (words/cycle), got {bandwidth!r}")
    if len(sram_kb) != 3 or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in sram_kb):
        raise UserError(f"systolic: sram_kb must be three positive integers (ifmap, filter, ofmap kB), got {sram_kb!r}")
    words = {}
    for op, unique, reads, kb in (
        ("ifmap", M * base.reduction, base.sram_ifmap_reads, sram_kb[0]),
        ("filter", base.reduction * N, base.sram_filter_reads, sram_kb[1]),
    ):
        active = math.ceil(kb * 1024 * 0.5)
        words[op] = 0 if unique <= active else max(0, math.ceil(reads) - active)
    words["ofmap"] = max(0, base.sram_ofmap_writes - sram_kb[2] * 1024)
    compute = base.cycles + 1
    stream = max(_cdiv(w, int(bandwidth)) for w in words.values())
    return UserModeResult(base.cycles, max(0, stream - compute), words)


# --------------------------------------------------------------------------------------------------
# A layer of a workload on a machine: the ``systolic`` mode's result
# --------------------------------------------------------------------------------------------------


def covering_nm(group_max: int, m: int) -> tuple[int, int] | None:
    """The n:m an unstructured mask runs at: its smallest covering n of every ``m`` consecutive input
    features (``group_max``: the most kept entries in any aligned group of m, a mask statistic), so
    every group fits; None (dense) when n = m.  An all-pruned mask still streams one weight per block."""
    if m < 1 or group_max < 0:
        raise UserError(f"systolic: covering n:m needs m >= 1 and a group maximum >= 0, got {group_max}, {m}")
    n = min(max(group_max, 1), m)
    return None if n >= m else (n, m)


def covering_note(nm: tuple[int, int] | None, m: int) -> str:
    """The line the output prints for a covering."""
    return f"runs as {nm[0]}:{nm[1]} (smallest covering n:m, m = {m})" if nm else f"runs dense (no n < {m} covers every group of {m})"


def _energy(s: SystolicResult, M: int, N: int, K: int, nm: tuple[int, int] | None, hw) -> dict:
    """Energy by class (integer femtojoules) from the preset's table: every SRAM access SCALE-Sim counts
    (ifmap reads at ``act_bits``, filter reads at ``weight_bits``, ofmap writes at ``acc_bits``) plus each
    operand's first write into its buffer; DRAM: each operand moved once (weights, metadata, activations,
    outputs; a lower bound: CALC mode has no refetch); MACs: the useful M x N x K'; index: one metadata
    entry decoded per weight read under n:m; static: ``static_w`` for the cycles."""
    bits = _dram_bits(s, M, N, K, nm, hw)
    reads = (
        (s.sram_ifmap_reads * hw.act_bits, "e_abuf_pj_per_byte"),
        (s.sram_filter_reads * hw.weight_bits, "e_wbuf_pj_per_byte"),
        (s.sram_ofmap_writes * hw.acc_bits, "e_obuf_pj_per_byte"),
        (bits["bits_weights"], "e_wbuf_pj_per_byte"),
        (bits["bits_index"], "e_ibuf_pj_per_byte"),
        (bits["bits_act"], "e_abuf_pj_per_byte"),
        (bits["bits_out"], "e_obuf_pj_per_byte"),
    )
    sram = sum(_cdiv(math.ceil(b) * hw.energy_fj(key), 8) for b, key in reads)
    dram = _cdiv(sum(bits.values()) * hw.energy_fj("e_dram_pj_per_byte"), 8) if hw.memory else 0
    out = {
        "dram": dram,
        "sram": sram,
        "mac": s.macs * hw.energy_fj("e_mac_pj"),
        "index": (s.sram_filter_reads if nm else 0) * hw.energy_fj("e_index_pj"),
        "static": s.cycles * hw.static_fj_per_cycle,  # static_w for the layer's cycles, like every mode
    }
    out["total"] = sum(out.values())
    return out


def _dram_bits(s: SystolicResult, M: int, N: int, K: int, nm: tuple[int, int] | None, hw) -> dict:
    return {
        "bits_weights": s.reduction * N * hw.weight_bits,
        "bits_index": round(s.metadata_words * 32),
        "bits_act": M * K * hw.act_bits,
        "bits_out": M * N * hw.out_bits,
    }


def systolic_mode_layer(rows: int, cols: int, tokens: int, group_max: int, hw) -> dict:
    """One weight matrix ``[rows (out features), cols (in features)]`` of a workload at ``tokens`` tokens
    on ``hw``'s systolic array (``hw.systolic_shape``, ``hw.dataflow``): the ``systolic`` mode's result.

    SCALE-Sim's GEMM: M = tokens, N = rows, K = cols.  The mask runs at :func:`covering_nm` of its
    ``group_max`` over ``hw.nm_m``; the dense baseline is the same array dense.  ``cycles`` is SCALE-Sim
    v3's CALC "Total Cycles" exactly (no DRAM stalls: ``stall_cycles`` = 0, compute-bound); bytes and
    energy as :func:`_energy`.
    """
    R, C = hw.systolic_shape
    nm = covering_nm(group_max, hw.nm_m)
    s = systolic_layer(R, C, hw.dataflow, tokens, rows, cols, nm)
    d = s if nm is None else systolic_layer(R, C, hw.dataflow, tokens, rows, cols, None)
    e, de = _energy(s, tokens, rows, cols, nm, hw), _energy(d, tokens, rows, cols, None, hw)
    return {
        "cycles": s.cycles,
        "dense_cycles": d.cycles,
        "compute_cycles": s.cycles,
        "memory_cycles": 0,
        "stall_cycles": 0,
        "bound": "compute",
        **_dram_bits(s, tokens, rows, cols, nm, hw),
        "macs": s.macs,
        "index_entries": s.sram_filter_reads if nm else 0,
        "nm_n": nm[0] if nm else hw.nm_m,
        "utilization": s.utilization,
        "folds": s.folds,
        "sram_ifmap_reads": s.sram_ifmap_reads,
        "sram_filter_reads": s.sram_filter_reads,
        "sram_ofmap_writes": s.sram_ofmap_writes,
        "energy": e,
        "dense_energy": de["total"],
    }
