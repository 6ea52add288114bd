"""The compute-only models (cost library): ``besa-compat`` / ``besa-code`` and ``corrected``.

``besa-compat`` is exactly how the BESA authors computed their ViTCoD table (hw_sim/ in
OpenGVLab/LLMPrune-BESA), quirks included; each quirk is marked ``QUIRK`` next to what
``corrected`` does instead.  Everything here works on the kept count of every column; only
``besa-code``'s sparse count (their column reordering) reads the mask, through the ``sparse_nnz``
callback its caller passes (:func:`simulator.reference.reorder_sparse_nnz` on a bool mask, the
packed-mask version in :mod:`simulator.fast`).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from simulator.cost.tiles import cdiv
from simulator.hardware import Hardware

# BESA's retry loop: the threshold starts here, moves by this step, at most this many times.
COMPAT_START, COMPAT_STEP, COMPAT_ADJUSTMENTS = 0.5, 0.1, 5


# ============================================================================ besa-compat / besa-code
def compat_try(counts: np.ndarray, rows: int, cols: int, tokens: int, threshold: float, lines: int, height: int, sparse_nnz=None) -> dict:
    """One threshold try of the BESA authors' ``sparse_linear_simulate`` (after their ``reorder.calc``).

    ``counts[j]`` = kept entries of column j; column j is dense when counts[j] > threshold * rows.
    Returns cycles and the partition numbers.  ``sparse_nnz(dense)``, when given, replaces
    nnz_s = E - D by what their column reordering leaves in the columns >= G (mode ``besa-code``,
    see :func:`simulator.reference.reorder_sparse_nnz`).
    """
    # Their threshold test runs in torch: an int64 degree tensor compared with a Python float promotes
    # both to float32, so the threshold is float32(threshold * M).  (Matters only when threshold*M
    # sits within float32 rounding of an integer, e.g. 0.7999999999999999 * 5.)
    counts = np.asarray(counts, dtype=np.int64)
    dense = counts.astype(np.float32) > np.float32(threshold * rows)
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
        "dense_threshold": threshold,
    }


def _de_ratio_step(D: int, E: int) -> int:
    """+1 (raise the threshold), -1 (lower it) or 0 (stop), from D/E as their torch code computes it."""
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
    """Their ``process_layer_loop``: the retry loop over the threshold, keeping the minimum cycles seen.

    QUIRK (retry loop): the threshold starts at 0.5 and moves by +-0.1 (float accumulation, as in
    Python) while D/E >= 0.6 or <= 0.4; the loop stops after 5 adjustments, so at most 5 tries are
    evaluated (the 5th adjustment is never evaluated).  ``corrected`` scans every partition instead.
    """
    threshold, adjustments, best = COMPAT_START, 0, None
    tries = 0
    while True:
        r = compat_try(counts, rows, cols, tokens, threshold, lines, height, sparse_nnz)
        tries += 1
        if best is None or r["cycles"] < best["cycles"]:
            best = r
        step = _de_ratio_step(r["D"], r["E"])
        if step == 0:
            break
        threshold = threshold + COMPAT_STEP if step > 0 else threshold - COMPAT_STEP
        adjustments += 1
        if adjustments == COMPAT_ADJUSTMENTS:
            break
    return dict(best, tries=tries)


def compat_patches(
    counts: np.ndarray, rows: int, cols: int, tokens: int, hw: Hardware, sparse_nnz: Callable[[int, int, np.ndarray], int] | None = None
) -> dict:
    """``besa-compat`` cycles of one matrix (``counts`` = kept per column) and their dense baseline.

    QUIRK (patching): a wide matrix (K > M, e.g. down_proj 4096x11008) is cut into column patches of
    width M, each patch runs its own retry loop (:func:`compat_matrix`), and the patch minima are
    summed.  (Their code patches by name, down_proj only; the spec's rule K > M is the same thing for
    LLaMA-1/2 and also patches GQA k/v projections of LLaMA-70B.)
    QUIRK (dense baseline): the same formula on an all-kept matrix with G = K: ceil(K*K*N/(L*H)) per
    (patch) matrix, an undercount for tall matrices (gate/up 11008x4096 -> 4096 cycles, not 11008).
    ``sparse_nnz(b, e, dense)`` (``besa-code``): the sparse count their reordering leaves in the
    patch of columns [b, e) for its dense columns ``dense``.
    """
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
        "dense_threshold": None,
        "tries": 0,
    }
    for b, e in patches:
        fn = None if sparse_nnz is None else (lambda dense, b=b, e=e: sparse_nnz(b, e, dense))
        r = compat_matrix(counts[b:e], rows, e - b, tokens, L, H, fn)
        for k in ("cycles", "dense_engine_cycles", "sparse_engine_cycles", "G", "tries"):
            out[k] += r[k]
        if len(patches) == 1:
            out.update(lines_dense=r["lines_dense"], lines_sparse=r["lines_sparse"], dense_threshold=r["dense_threshold"])
        # dense baseline: G = K, nnz_s = 0 -> ratio 1 -> Ld = L; sparse side 0
        out["dense_cycles"] += cdiv((e - b) * tokens * (e - b), L * H)
    out["nnz"] = int(np.asarray(counts).sum())
    return out


# ============================================================================ corrected
def corrected_split(G: int, nnz_s: int, rows: int, lines: int) -> tuple[int, int]:
    """ViTCoD's proportional lane split, but every engine that has work gets at least one line."""
    if G == 0 and nnz_s == 0:
        return 0, 0
    if nnz_s == 0:
        return lines, 0
    if G == 0:
        return 0, lines
    if lines == 1:
        return 1, 1  # one line: the engines take turns (see corrected_cycles)
    Ld = (lines * rows * G) // (rows * G + nnz_s)
    Ld = min(max(Ld, 1), lines - 1)
    return Ld, lines - Ld


def corrected_cycles(G: int, nnz_s: int, rows: int, tokens: int, lines: int, height: int) -> dict:
    """Compute-only cycles of one partition: dense work M*G*N on Ld lines, sparse nnz_s*N on Ls lines
    (one line: the engines take turns, their cycles add up)."""
    Ld, Ls = corrected_split(G, nnz_s, rows, lines)
    dc = cdiv(rows * G * tokens, Ld * height) if G else 0
    sc = cdiv(nnz_s * tokens, Ls * height) if nnz_s else 0
    cycles = dc + sc if (lines == 1 and G and nnz_s) else max(dc, sc)
    return {"cycles": cycles, "dense_engine_cycles": dc, "sparse_engine_cycles": sc, "G": G, "lines_dense": Ld, "lines_sparse": Ls}


def corrected_dense_cycles(rows: int, cols: int, tokens: int, hw: Hardware) -> int:
    """``corrected``'s dense baseline: the true ceil(M*K*N/P)."""
    return cdiv(rows * cols * tokens, hw.lines * hw.macs_per_line)
