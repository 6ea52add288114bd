"""The fast path: statistics of the packed mask (:mod:`simulator.stats`) + the C++ core (``simulator._core``).

:func:`evaluate` runs one layer in one mode for several token counts and returns a dict per token
count with the same keys as :mod:`simulator.reference` (cycles, bits ...).  ``engine="cpp"`` uses the
compiled core, ``engine="python"`` the reference cycle model on the same statistics (slow; the C++
core must agree with it exactly), ``engine="reference"`` the reference on the unpacked bool mask
(small layers only: it is the specification).

:func:`evaluate_stats` does the same from a layer's :class:`~simulator.stats.MaskStats`, so the
statistics of a mask are computed once for every machine, mode and token count it runs on.
"""

from __future__ import annotations

import numpy as np

from dataclasses import dataclass
from typing import Callable

from simulator import reference as ref
from simulator import stats
from simulator.stats import MaskStats
from besa_common.errors import UserError
from simulator.hardware import GATHER_SCALE, INDEX_FORMATS, NM_EFF_SCALE, Hardware

ENGINES = ("cpp", "python", "reference")

try:  # the compiled core is optional at import time so that a broken build still gives a clear error
    from simulator import _core  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - exercised only without the extension
    _core = None


def have_core() -> bool:
    return _core is not None


def default_engine() -> str:
    return "cpp" if _core is not None else "python"


def hw_fields(hw: Hardware) -> dict:
    """The integer view of a Hardware the C++ core reads (cpp/model.hpp ``HwParams``, every field)."""
    return {
        "lines": hw.lines,
        "macs_per_line": hw.macs_per_line,
        "memory": bool(hw.memory),
        "bw_bits_scaled": hw.bw_bits_scaled,
        "weight_bits": hw.weight_bits,
        "act_bits": hw.act_bits,
        "out_bits": hw.out_bits,
        "acc_bits": hw.acc_bits,
        "kv_bits": hw.kv_bits,
        "index_format": INDEX_FORMATS.index(hw.index_format),
        "index_bits": hw.index_bits,
        "rowptr_bits": hw.rowptr_bits,
        "rle_bits": hw.rle_bits,
        "pipeline_fill": hw.pipeline_fill,
        "tile_m": hw.tile_m,
        "tile_k": hw.tile_k,
        "tile_n": hw.tile_n,
        "weight_buffer_bytes": hw.weight_buffer_bytes,
        "act_buffer_bytes": hw.act_buffer_bytes,
        "out_buffer_bytes": hw.out_buffer_bytes,
        "index_buffer_bytes": hw.index_buffer_bytes,
        "split_optimal": hw.split == "optimal",
        "assign_lpt": hw.assign == "lpt",
        "gather_scale": GATHER_SCALE,
        "nm_n": hw.nm_n,
        "nm_m": hw.nm_m,
        "nm_meta_bits": hw.nm_meta_bits,
        "nm_eff_scaled": hw.nm_eff_scaled,
        "nm_eff_scale": NM_EFF_SCALE,
    }


_HW_CACHE: dict = {}


def hw_params(hw: Hardware):
    """The typed C++ HwParams of ``hw`` (cached: Hardware is frozen and hashable)."""
    p = _HW_CACHE.get(hw)
    if p is None:
        p = _HW_CACHE[hw] = _core.HwParams(hw_fields(hw))
    return p


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
    """``besa-compat`` from column counts (same code path as reference.compat_layer after the counts);
    with ``packed`` given, ``besa-code`` (their column reordering reproduced bit for bit)."""
    L, H = hw.lines, hw.macs_per_line
    patches = [(b, min(cols, b + rows)) for b in range(0, cols, rows)] if cols > rows else [(0, cols)]
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
        fn = None
        if packed is not None:
            fn = lambda dense, b=b, e=e: reorder_sparse_nnz_packed(packed, b, e - b, dense, counts[b:e])
        r = ref.compat_matrix(counts[b:e], rows, e - b, tokens, L, H, fn)
        for k in ("cycles", "dense_engine_cycles", "sparse_engine_cycles", "G", "tries"):
            out[k] += r[k]
        if len(patches) == 1:
            out.update(lines_dense=r["lines_dense"], lines_sparse=r["lines_sparse"], tau=r["tau"])
        out["dense_cycles"] += ref.cdiv((e - b) * tokens * (e - b), L * H)
    out["nnz"] = int(counts.sum())
    return out


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
        "dense_cycles": ref.cdiv(rows * cols * tokens, L * H),
        "nnz": E,
        "tau": None,
        "tries": cols + 1,
    }


# ---------------------------------------------------------------------------- cycle-level modes
def _dense(rows: int, cols: int, tokens: int, hw: Hardware, engine: str) -> dict:
    if engine == "cpp":
        return dict(_core.dense_layer(rows, cols, tokens, hw_params(hw)))
    return ref.dense_layer(rows, cols, tokens, hw)


def _nm(rows: int, cols: int, tokens: int, group_max: int, hw: Hardware, engine: str) -> dict:
    if engine == "cpp":
        return dict(_core.nm_layer(rows, cols, tokens, group_max, hw_params(hw)))
    return ref.nm_layer(rows, cols, tokens, group_max, hw)


def attention(hidden: int, kv_dim: int, tokens: int, context: int, batch: int, hw: Hardware, engine: str) -> dict:
    """One block's attention + KV cache (see :func:`simulator.reference.attention_block`)."""
    if engine == "cpp":
        return dict(_core.attention_block(hidden, kv_dim, tokens, context, batch, hw_params(hw)))
    return ref.attention_block(hidden, kv_dim, tokens, context, batch, hw)


def _candidate_bounds(st: MaskStats, dense: np.ndarray, tokens: int, hw: Hardware) -> tuple[int, int]:
    """(cycles, DRAM bits) no evaluation of this dense-column set can go below: its kept work on all
    MACs, and its values (no padding), the index of that many values, activations and outputs each
    moved once.  Every result satisfies (cycles, bits) >= this pair (cycles first)."""
    M, K = st.rows, st.cols
    G = int(dense.sum())
    S = st.nnz - st.dense_kept(dense)
    bits = (M * G + S) * hw.weight_bits + ref.index_bits(M, K - G, S, 0, hw) + K * tokens * hw.act_bits + M * tokens * hw.out_bits
    return max(ref.cdiv((M * G + S) * tokens, hw.macs), ref.mem_cycles(bits, hw)), bits


def _cycle(st: MaskStats, tokens: list[int], hw: Hardware, engine: str) -> list[dict]:
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
        bounds = [_candidate_bounds(st, dense, n, hw) for _tau, dense in sets]
        best, best_key = None, None
        for i in sorted(range(len(sets)), key=lambda i: (*bounds[i], i)):
            if best_key is not None and (*bounds[i], i) > best_key:
                break  # sorted by bound: no later candidate can win either
            tau, dense = sets[i]
            if engine == "cpp":
                r = _cycle_candidate_cpp(st, dense, n, hw, i, best_key)
                if r is None:
                    continue  # cannot beat the best so far
            else:
                G, row_sparse = int(dense.sum()), st.row_sparse(dense)
                pads = st.pads(dense, hw.rle_bits) if hw.index_format == "rle" else 0
                gs = hw.gather_scaled or st.gather(dense, hw.macs_per_line, hw.banks, GATHER_SCALE)
                tiles = ref.tilings(rows, cols, n, hw, sparse=G < cols, own=False)
                r = ref.evaluate_partition(rows, cols, n, G, [int(x) for x in row_sparse], pads, gs, hw, tiles)
            key = (r["cycles"], ref.dram_bits(r), i)
            if best_key is None or key < best_key:
                best, best_key = dict(r, tau=tau), key
        best.update(nnz=st.nnz, lb_ideal=ref.lb_ideal(st.nnz, rows, cols, n, hw))
        out.append(_with_baselines(best, rows, cols, n, gmax, hw, engine))
    return out


def _cycle_candidate_cpp(st: MaskStats, dense: np.ndarray, n: int, hw: Hardware, i: int, best_key: tuple | None) -> dict | None:
    """Candidate i's :func:`simulator.reference.evaluate_partition` result, or None when it cannot
    beat ``best_key`` = (cycles, DRAM bits, candidate index) of the best so far."""
    G, row_sparse, hwp = int(dense.sum()), st.row_sparse(dense), hw_params(hw)
    bound = -1 if best_key is None else best_key[0]
    gs = hw.gather_scaled or st.gather(dense, hw.macs_per_line, hw.banks, GATHER_SCALE)  # 64 rows: cheap
    rle = hw.index_format == "rle" and G < st.cols
    if rle and best_key is not None and not st.has_pads(dense, hw.rle_bits):
        # padding only adds bits (so DRAM cycles) to every option: without it, a lower bound of
        # the candidate's (cycles, bits); only below the best is the pass for the padding worth it
        low = _core.cycle_partition(st.rows, st.cols, n, G, row_sparse, 0, gs, hwp, bound)
        if low is None or (low["cycles"], ref.dram_bits(low), i) > best_key:
            return None
    pads = st.pads(dense, hw.rle_bits) if rle else 0
    r = _core.cycle_partition(st.rows, st.cols, n, G, row_sparse, pads, gs, hwp, bound)
    return None if r is None else dict(r)


def _with_baselines(r: dict, rows: int, cols: int, n: int, gmax: int, hw: Hardware, engine: str) -> dict:
    """Attach the dense baseline (own best tiling) and, for an n:m-compliant mask only, the n:m
    engine's cycles; ``nm_n`` is always the smallest covering n (m = hw.nm_m)."""
    d = _dense(rows, cols, n, hw, engine)
    out = dict(r, dense_cycles=d["cycles"], dense_energy=ref.energy_fj(d, hw)["total"], nm_n=max(gmax, 1))
    if gmax <= hw.nm_n:
        out["nm_cycles"] = _nm(rows, cols, n, gmax, hw, engine)["cycles"]
    return out


def _dense_mode(st: MaskStats, tokens, hw, engine):
    rows, cols = st.rows, st.cols
    return [
        dict(d, dense_cycles=d["cycles"], dense_energy=ref.energy_fj(d, hw)["total"], nnz=st.nnz) for d in (_dense(rows, cols, n, hw, engine) for n in tokens)
    ]


def _nm_mode(st: MaskStats, tokens, hw, engine):
    rows, cols = st.rows, st.cols
    gmax = st.group_max(hw.nm_m)
    out = []
    for n in tokens:
        r = _nm(rows, cols, n, gmax, hw, engine)
        d = _dense(rows, cols, n, hw, engine)
        out.append(dict(r, dense_cycles=d["cycles"], dense_energy=ref.energy_fj(d, hw)["total"], nnz=st.nnz, nm_cycles=r["cycles"]))
    return out


def _compat(st: MaskStats, tokens, hw, engine):
    return [compat_from_counts(st.counts, st.rows, st.cols, n, hw) for n in tokens]


def _code(st: MaskStats, tokens, hw, engine):
    packed = st.mask()
    return [compat_from_counts(st.counts, st.rows, st.cols, n, hw, packed) for n in tokens]


def _corrected(st: MaskStats, tokens, hw, engine):
    return [corrected_from_counts(st.counts, st.rows, st.cols, n, hw) for n in tokens]


# ---------------------------------------------------------------------------- the mode registry
def _ref_cycle(keep, n, hw):
    M, K = keep.shape
    return _with_baselines(ref.cycle_layer(keep, n, hw), M, K, n, ref.nm_group_max(keep, hw.nm_m), hw, "reference")


def _ref_dense(keep, n, hw):
    d = ref.dense_layer(*keep.shape, n, hw)
    return dict(d, dense_cycles=d["cycles"], dense_energy=ref.energy_fj(d, hw)["total"], nnz=int(keep.sum()))


def _ref_nm(keep, n, hw):
    M, K = keep.shape
    r = ref.nm_layer(M, K, n, ref.nm_group_max(keep, hw.nm_m), hw)
    d = ref.dense_layer(M, K, n, hw)
    return dict(r, dense_cycles=d["cycles"], dense_energy=ref.energy_fj(d, hw)["total"], nnz=int(keep.sum()), nm_cycles=r["cycles"])


@dataclass(frozen=True)
class Mode:
    """One simulator mode: the fast path, the reference (spec) path, and what it models.

    ``fast(stats, tokens, hw, engine) -> [dict per token count]`` (``stats``: the layer's
    :class:`~simulator.stats.MaskStats`);
    ``reference(keep, tokens, hw) -> dict``.  ``memory``: the mode has a DRAM / tiling model (bytes,
    stalls, bound, energy); otherwise it is compute-only.
    """

    name: str
    fast: Callable
    reference: Callable
    memory: bool
    help: str


MODES_REGISTRY: dict[str, Mode] = {
    m.name: m
    for m in (
        Mode("besa-compat", _compat, lambda k, n, hw: ref.compat_layer(k, n, hw), False, "the BESA authors' method as specified, quirks included"),
        Mode("besa-code", _code, lambda k, n, hw: ref.compat_layer(k, n, hw, code=True), False, "besa-compat plus their column-reordering bug, bit for bit"),
        Mode("corrected", _corrected, ref.corrected_layer, False, "compute-only model without the quirks"),
        Mode("cycle", _cycle, _ref_cycle, True, "cycle-level model (default)"),
        Mode("dense", _dense_mode, _ref_dense, True, "dense baseline"),
        Mode("nm", _nm_mode, _ref_nm, True, "n:m (2:4-style) engine baseline"),
    )
}
MODES = tuple(MODES_REGISTRY)


def get_mode(name: str) -> Mode:
    try:
        return MODES_REGISTRY[name]
    except KeyError:
        raise UserError(f"unknown mode {name!r} (modes: {', '.join(MODES)})") from None


def evaluate(packed: np.ndarray, rows: int, cols: int, mode: str, tokens: list[int], hw: Hardware, engine: str = "cpp") -> list[dict]:
    """One layer (bit-packed keep mask ``[rows, ceil(cols/8)]``) in ``mode`` for each token count.

    Every result has ``cycles``, ``dense_cycles`` and ``nnz``; the memory modes add the breakdown of
    :func:`simulator.reference.evaluate_partition` (bytes by class, stalls, bound, tiles, energy).
    """
    _check_engine(mode, engine)
    return evaluate_stats(MaskStats(rows, cols, packed=packed), mode, tokens, hw, engine)


def _check_engine(mode: str, engine: str) -> None:
    get_mode(mode)
    if engine not in ENGINES:
        raise UserError(f"unknown engine {engine!r} (engines: {', '.join(ENGINES)})")
    if engine == "cpp" and _core is None:
        raise UserError("the C++ core simulator._core is not built (pip install --no-build-isolation -e .); use --engine python")


def evaluate_stats(st: MaskStats, mode: str, tokens: list[int], hw: Hardware, engine: str = "cpp") -> list[dict]:
    """:func:`evaluate` from the layer's statistics (computed once, reused for every machine)."""
    _check_engine(mode, engine)
    spec = get_mode(mode)
    if engine == "reference":
        keep = np.unpackbits(st.mask(), axis=1, count=st.cols, bitorder="little").astype(bool)
        out = [spec.reference(keep, n, hw) for n in tokens]
    else:
        out = spec.fast(st, tokens, hw, engine)
    if spec.memory:
        for r in out:
            r["energy"] = ref.energy_fj(r, hw)
    return out


def evaluate_dense(rows: int, cols: int, tokens: int, hw: Hardware, engine: str) -> dict:
    """A dense matrix (the LM head) on this machine: the dense baseline's result."""
    return _dense(rows, cols, tokens, hw, engine if engine != "reference" else "python")
