"""Work that needs no partition search (cost library): the dense baseline, the n:m engine, one
block's attention + KV cache and the embedding lookup — each on its own best tiling."""

from __future__ import annotations

from simulator.cost.energy import energy_fj
from simulator.cost.objective import select, with_energy
from simulator.cost.partition import dense_beats, evaluate_partition, lb_ideal
from simulator.cost.tiles import bound_of, cdiv, classes, dequant_cycles, group_bits, mem_cycles, overlap, sram_bits, tiling_result, tilings, traffic
from simulator.hardware import GATHER_SCALE, NM_EFF_SCALE, Hardware


def dense_layer(M: int, K: int, N: int, hw: Hardware) -> dict:
    """Dense baseline: every weight on the dense engine with all lines, no index traffic, and its
    OWN best tiling (independent of any tile override)."""
    r = select(evaluate_partition(M, K, N, K, [0] * M, 0, GATHER_SCALE, hw, tilings(M, K, N, hw, sparse=False, own=True)), hw)
    r["lb_ideal"] = lb_ideal(M * K, M, K, N, hw)
    return r


def nm_layer(M: int, K: int, N: int, group_max: int, hw: Hardware) -> dict:
    """The n:m engine (2:4 sparse tensor core style) on the same machine, own best tiling.

    It runs at ``n_use = max(hw.nm_n, group_max)`` of ``nm_m`` (a mask that is not hw-n:m compliant
    runs at its smallest covering n:m; n_use = m is the dense engine).  A tile's dense work
    (:func:`~simulator.cost.partition.dense_beats`) scales by n_use/m (rounded up; exactly half for
    2:4 when even), plus lambda; weights are n_use values per group of m plus ceil(log2 m) metadata
    bits each.

    ``hw.nm_efficiency`` < 1 (real n:m kernels, e.g. a GPU's sparse tensor-core GEMMs, reach only a
    fraction of the ideal engine's rates): every tiling's compute and memory cycles are each stretched
    to ceil(ideal * NM_EFF_SCALE / nm_eff_scaled) before the objective picks one.
    """
    n_use = max(hw.nm_n, group_max, 1)
    if n_use >= hw.nm_m:
        return dict(dense_layer(M, K, N, hw), nm_n=hw.nm_m)
    groups = cdiv(K, hw.nm_m)
    W = M * groups * n_use * hw.weight_bits + group_bits(M, K, hw)
    I = M * groups * n_use * hw.nm_meta_bits
    beats = M * cdiv(cdiv(K, hw.macs_per_line) * n_use, hw.nm_m)
    eff = hw.nm_eff_scaled
    points = []
    for tm, tn in tilings(M, K, N, hw, sparse=False, own=True):
        C = 0
        for tn_j, cnt in classes(N, tn):
            for t, c in classes(M, tm):
                C += cnt * c * (cdiv(dense_beats(t, tn_j, K, hw.lines, hw.macs_per_line) * n_use, hw.nm_m) + hw.pipeline_fill)
        bits = traffic(M, K, N, tm, tn, W, I, hw)
        cycles, Mem, C = overlap(max(C, dequant_cycles(M * groups * n_use, cdiv(N, tn), hw)), bits, hw)
        r = tiling_result(cycles, Mem, C, bits, tm, tn, N, C, 0)
        del r["_bits"]
        if eff < NM_EFF_SCALE:
            C, Mem = (cdiv(r[k] * NM_EFF_SCALE, eff) for k in ("compute_cycles", "memory_cycles"))
            r.update(cycles=max(C, Mem), compute_cycles=C, memory_cycles=Mem, stall_cycles=max(0, Mem - C), dense_engine_cycles=C)
        T = r["token_tiles"]
        stored = M * groups * n_use
        # the n:m engine reads activations as the dense engine does (broadcast once per row tile) and
        # picks n of every m by the metadata: activation reads are those of G = K columns
        r.update(
            sram_bits(N, K, 0, 0, beats, tm, tn, M, W, I, bits, hw),
            bound=bound_of(r),
            nm_n=n_use,
            macs=stored * N,
            index_entries=stored * T,
            dequant_weights=stored * T if hw.group_size else 0,
        )
        points.append(with_energy(r, hw))
    return select(points, hw)


def with_baselines(r: dict, dense: dict, nm: dict | None, group_max: int, hw: Hardware) -> dict:
    """A cycle-mode result with its dense baseline (``dense``: :func:`dense_layer`) and, for an
    n:m-compliant mask only (``nm`` not None), the n:m engine's cycles; ``nm_n`` is always the
    smallest covering n (m = hw.nm_m) = ``group_max``."""
    out = dict(r, dense_cycles=dense["cycles"], dense_energy=energy_fj(dense, hw)["total"], nm_n=max(group_max, 1))
    if nm is not None:
        out["nm_cycles"] = nm["cycles"]
    return out


def as_mode_result(r: dict, dense: dict, nnz: int, hw: Hardware, nm_cycles: bool = False) -> dict:
    """A ``dense`` / ``nm`` mode result: the engine's own result ``r`` beside the dense baseline
    (``dense``), the mask's kept count, and for ``nm`` its cycles as ``nm_cycles`` too."""
    out = dict(r, dense_cycles=dense["cycles"], dense_energy=energy_fj(dense, hw)["total"], nnz=nnz)
    if nm_cycles:
        out["nm_cycles"] = r["cycles"]
    return out


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
