"""The fast path: numba statistics of the packed mask + the C++ core (``simulator._core``).

:func:`evaluate` runs one layer in one mode for several token counts and returns a dict per token
count with the same keys as :mod:`simulator.reference` (cycles, bits ...).  ``engine="cpp"`` uses the
compiled core, ``engine="python"`` the reference cycle model on the same statistics (slow; the C++
core must agree with it exactly), ``engine="reference"`` the reference on the unpacked bool mask
(small layers only: it is the specification).
"""

from __future__ import annotations

import numpy as np

from simulator import reference as ref
from simulator import stats
from besa_common.errors import UserError
from simulator.hardware import GATHER_SCALE, Hardware

MODES = ("besa-compat", "besa-code", "corrected", "cycle", "dense", "nm")
ENGINES = ("cpp", "python", "reference")

try:  # the compiled core is optional at import time so that a broken build still gives a clear error
    from simulator import _core  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - exercised only without the extension
    _core = None


def have_core() -> bool:
    return _core is not None


def default_engine() -> str:
    return "cpp" if _core is not None else "python"


def hw_params(hw: Hardware) -> dict:
    """The integer view of a Hardware the C++ core reads (see cpp/model.hpp ``HwParams``)."""
    return {
        "lines": hw.lines, "macs_per_line": hw.macs_per_line, "memory": bool(hw.memory),
        "bw_bits_scaled": hw.bw_bits_scaled, "weight_bits": hw.weight_bits, "act_bits": hw.act_bits,
        "out_bits": hw.out_bits, "index_format": ("bitmap", "csr", "rle").index(hw.index_format),
        "index_bits": hw.index_bits, "rowptr_bits": hw.rowptr_bits, "rle_bits": hw.rle_bits,
        "pipeline_fill": hw.pipeline_fill, "tile_m": hw.tile_m, "tile_k": hw.tile_k, "tile_n": hw.tile_n,
        "split_optimal": hw.split == "optimal", "assign_lpt": hw.assign == "lpt",
        "gather_scaled": hw.gather_scaled, "gather_scale": GATHER_SCALE, "nm_n": hw.nm_n, "nm_m": hw.nm_m,
        "nm_meta_bits": hw.nm_meta_bits,
    }


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
        sub = np.unpackbits(packed[bad_rows], axis=1, bitorder="little")[:, col0:col0 + cols].astype(bool)
        total = int(counts[good_cols].sum() - sub[:, good_cols].sum())
    # cells touching a merged row or column: collapse duplicates
    cells = []
    if mr.size:
        sub = np.unpackbits(packed[mr], axis=1, bitorder="little")[:, col0:col0 + cols].astype(bool)
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


def compat_from_counts(counts: np.ndarray, rows: int, cols: int, tokens: int, hw: Hardware,
                       packed: np.ndarray | None = None) -> dict:
    """``besa-compat`` from column counts (same code path as reference.compat_layer after the counts);
    with ``packed`` given, ``besa-code`` (their column reordering reproduced bit for bit)."""
    L, H = hw.lines, hw.macs_per_line
    patches = [(b, min(cols, b + rows)) for b in range(0, cols, rows)] if cols > rows else [(0, cols)]
    out = {"cycles": 0, "dense_cycles": 0, "dense_engine_cycles": 0, "sparse_engine_cycles": 0, "G": 0,
           "lines_dense": None, "lines_sparse": None, "tau": None, "tries": 0}
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
    return {"cycles": int(cyc[g]), "dense_engine_cycles": int(dc[g]), "sparse_engine_cycles": int(sc[g]),
            "G": g, "lines_dense": int(Ld[g]), "lines_sparse": int(Ls[g]), "dense_cycles": ref.cdiv(rows * cols * tokens, L * H),
            "nnz": E, "tau": None, "tries": cols + 1}


# ---------------------------------------------------------------------------- cycle-level modes
def _cycle_stats(packed: np.ndarray, rows: int, cols: int, hw: Hardware) -> dict:
    counts = stats.col_counts(packed, cols)
    dense = stats.dense_columns(counts, rows, hw.tau)
    sparse_sel = ~dense
    row_sparse = stats.row_counts(packed, sparse_sel)
    if hw.index_format == "rle" and sparse_sel.any():
        pads = stats.rle_pads(packed, cols, sparse_sel, hw.rle_bits)
    else:
        pads = np.zeros(rows, np.int64)
    return {"G": int(dense.sum()), "row_sparse": row_sparse, "row_pads": pads, "nnz": int(counts.sum()), "counts": counts}


def _run_cycle(st: dict, rows: int, cols: int, tokens: int, hw: Hardware, engine: str) -> dict:
    if engine == "cpp":
        return dict(_core.cycle_layer(rows, cols, tokens, st["G"], st["row_sparse"], st["row_pads"], st["nnz"], hw_params(hw)))
    return ref.cycle_from_stats(rows, cols, tokens, st["G"], [int(x) for x in st["row_sparse"]],
                                [int(x) for x in st["row_pads"]], st["nnz"], hw)


def _run_dense(rows: int, cols: int, tokens: int, hw: Hardware, engine: str) -> dict:
    if engine == "cpp":
        return dict(_core.dense_layer(rows, cols, tokens, hw_params(hw)))
    return ref.dense_layer(rows, cols, tokens, hw)


def _run_nm(rows: int, cols: int, tokens: int, group_max: int, hw: Hardware, engine: str) -> dict:
    if engine == "cpp":
        return dict(_core.nm_layer(rows, cols, tokens, group_max, hw_params(hw)))
    return ref.nm_layer(rows, cols, tokens, group_max, hw)


def evaluate(packed: np.ndarray, rows: int, cols: int, mode: str, tokens: list[int], hw: Hardware,
             engine: str = "cpp") -> list[dict]:
    """One layer (bit-packed keep mask ``[rows, ceil(cols/8)]``) in ``mode`` for each token count.

    Every result has ``cycles``, ``dense_cycles`` and ``nnz``; ``cycle`` mode adds the n:m engine
    (``nm_cycles``, ``nm_n``) and the full breakdown of :func:`simulator.reference.cycle_from_stats`.
    """
    if mode not in MODES:
        raise UserError(f"unknown mode {mode!r} (modes: {', '.join(MODES)})")
    if engine not in ENGINES:
        raise UserError(f"unknown engine {engine!r} (engines: {', '.join(ENGINES)})")
    if engine == "cpp" and _core is None:
        raise UserError("the C++ core simulator._core is not built (pip install --no-build-isolation -e .); use --engine python")
    if engine == "reference":
        return [_evaluate_reference(np.unpackbits(packed, axis=1, count=cols, bitorder="little").astype(bool), mode, n, hw)
                for n in tokens]
    out = []
    if mode in ("besa-compat", "corrected"):
        counts = stats.col_counts(packed, cols)
        fn = compat_from_counts if mode == "besa-compat" else corrected_from_counts
        return [fn(counts, rows, cols, n, hw) for n in tokens]
    if mode == "besa-code":
        counts = stats.col_counts(packed, cols)
        return [compat_from_counts(counts, rows, cols, n, hw, packed) for n in tokens]
    if mode == "dense":
        nnz = int(stats.col_counts(packed, cols).sum())
        for n in tokens:
            d = _run_dense(rows, cols, n, hw, engine)
            out.append(dict(d, dense_cycles=d["cycles"], nnz=nnz))
        return out
    gmax = stats.nm_group_max(packed, cols, hw.nm_m)
    if mode == "nm":
        nnz = int(stats.col_counts(packed, cols).sum())
        for n in tokens:
            r = _run_nm(rows, cols, n, gmax, hw, engine)
            d = _run_dense(rows, cols, n, hw, engine)
            out.append(dict(r, dense_cycles=d["cycles"], nnz=nnz))
        return out
    st = _cycle_stats(packed, rows, cols, hw)
    for n in tokens:
        r = _run_cycle(st, rows, cols, n, hw, engine)
        d = _run_dense(rows, cols, n, hw, engine)
        nm = _run_nm(rows, cols, n, gmax, hw, engine)
        out.append(dict(r, dense_cycles=d["cycles"], nm_cycles=nm["cycles"], nm_n=nm["nm_n"]))
    return out


def _evaluate_reference(keep: np.ndarray, mode: str, tokens: int, hw: Hardware) -> dict:
    M, K = keep.shape
    if mode == "besa-compat":
        return ref.compat_layer(keep, tokens, hw)
    if mode == "besa-code":
        return ref.compat_layer(keep, tokens, hw, code=True)
    if mode == "corrected":
        return ref.corrected_layer(keep, tokens, hw)
    d = ref.dense_layer(M, K, tokens, hw)
    if mode == "dense":
        return dict(d, dense_cycles=d["cycles"], nnz=int(keep.sum()))
    nm = ref.nm_layer(M, K, tokens, ref.nm_group_max(keep, hw.nm_m), hw)
    if mode == "nm":
        return dict(nm, dense_cycles=d["cycles"], nnz=int(keep.sum()))
    r = ref.cycle_layer(keep, tokens, hw)
    return dict(r, dense_cycles=d["cycles"], nm_cycles=nm["cycles"], nm_n=nm["nm_n"])
