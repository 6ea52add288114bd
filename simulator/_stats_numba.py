"""The numba kernels behind :mod:`simulator.stats` when the C++ core is not built, plus the one the
core does not have (besa-code's column relabelling, :func:`reorder_labels`).

numba's import and its first call cost about a second, more than a whole decode simulation, so
numba is imported and the kernels (:data:`_KERNELS`, plain Python functions until then) are compiled
only when one of them is first called (:func:`_compile`).  Masks are ``uint8 [rows, ceil(cols/8)]``, keep bits packed
along the in-features axis, little bit order, pad bits 0, 1 = kept (:mod:`besa_common.masks`).
Every function has a plain-numpy twin in :mod:`simulator.reference`; the tests check they agree.
"""

from __future__ import annotations

from functools import wraps

import numpy as np

_KERNELS: dict = {}  # name -> plain Python function, compiled by _compile()
_compiled = False


def _compile() -> None:
    """Import numba and compile every kernel, replacing each module-level name by its compiled
    version (a kernel calling another, e.g. _bank_gather -> _beat_conflicts, finds the compiled one)."""
    global _compiled
    if _compiled:
        return
    from numba import njit  # heavy: only here, on the first call of a kernel

    g = globals()
    for name, fn in _KERNELS.items():
        g[name] = njit(cache=True, nogil=True)(fn)
    _compiled = True


def _kernel(fn):
    """Register ``fn`` as a numba kernel: until :func:`_compile` runs, calling it compiles them all."""
    _KERNELS[fn.__name__] = fn

    @wraps(fn)
    def first_call(*args):
        _compile()
        return globals()[fn.__name__](*args)

    return first_call


# byte -> its 8 bits spread over the 8 bytes of a uint64 (lane b = bit b), for column counting
_SPREAD = np.array([sum(((v >> b) & 1) << (8 * b) for b in range(8)) for v in range(256)], dtype=np.uint64)
_POP8 = np.array([bin(v).count("1") for v in range(256)], dtype=np.int64)


@_kernel
def _col_counts(packed, spread, cols):
    rows, nb = packed.shape
    out = np.zeros(nb * 8, np.int64)
    acc = np.zeros(nb, np.uint64)
    pending = 0
    for r in range(rows):
        row = packed[r]
        for b in range(nb):
            acc[b] += spread[row[b]]
        pending += 1
        if pending == 255 or r == rows - 1:  # a lane holds at most 255 before it overflows
            for b in range(nb):
                a = acc[b]
                for k in range(8):
                    out[b * 8 + k] += (a >> np.uint64(8 * k)) & np.uint64(0xFF)
                acc[b] = 0
            pending = 0
    return out[:cols]


def col_counts(packed: np.ndarray, cols: int) -> np.ndarray:
    """Kept entries per column (input feature): int64 ``[cols]``."""
    if packed.shape[0] == 0:
        return np.zeros(cols, np.int64)
    return _col_counts(np.ascontiguousarray(packed), _SPREAD, cols)


@_kernel
def _row_counts_sel(packed, sel, pop8):
    rows, nb = packed.shape
    out = np.zeros(rows, np.int64)
    for r in range(rows):
        s = 0
        row = packed[r]
        for b in range(nb):
            s += pop8[row[b] & sel[b]]
        out[r] = s
    return out


def row_counts(packed: np.ndarray, select: np.ndarray | None = None) -> np.ndarray:
    """Kept entries per row, counting only the columns where the bool ``select[cols]`` is True."""
    nb = packed.shape[1]
    if select is None:
        sel = np.full(nb, 0xFF, np.uint8)
    else:
        sel = np.packbits(np.asarray(select, bool), bitorder="little")
        sel = np.pad(sel, (0, nb - sel.size))
    return _row_counts_sel(np.ascontiguousarray(packed), sel, _POP8)


@_kernel
def _rle_pads(packed, sel, cols, bits, tz8, lz8):
    # A fully selected byte with kept bits: its inner gaps are < 8 <= R+1 when bits >= 3, so only the
    # zeros before its first and after its last kept bit matter (tz8 / lz8 tables); other bytes go bit
    # by bit.  Same counts as the plain loop (reference.rle_pads).
    rows = packed.shape[0]
    out = np.zeros(rows, np.int64)
    r1 = 1 << bits
    fast = bits >= 3
    nb = (cols + 7) >> 3
    for r in range(rows):
        gap = 0
        pads = 0
        row = packed[r]
        for b in range(nb):
            s = sel[b]
            v = row[b] & s
            if fast and s == 0xFF and (b + 1) * 8 <= cols:
                if v == 0:
                    gap += 8
                else:
                    pads += (gap + tz8[v]) // r1
                    gap = lz8[v]
                continue
            for c in range(b * 8, min(cols, b * 8 + 8)):
                if (s >> (c & 7)) & 1:
                    if (v >> (c & 7)) & 1:
                        pads += gap // r1
                        gap = 0
                    else:
                        gap += 1
        out[r] = pads
    return out


_TZ8 = np.array([8 if v == 0 else (v & -v).bit_length() - 1 for v in range(256)], dtype=np.int64)
_LZ8 = np.array([8 if v == 0 else 8 - v.bit_length() for v in range(256)], dtype=np.int64)


def rle_pads(packed: np.ndarray, cols: int, select: np.ndarray, bits: int) -> np.ndarray:
    """Run-length padding entries per row over the selected (sparse) columns; see reference.rle_pads."""
    sel = np.packbits(np.asarray(select, bool), bitorder="little")
    sel = np.pad(sel, (0, packed.shape[1] - sel.size))
    return _rle_pads(np.ascontiguousarray(packed), sel, cols, bits, _TZ8, _LZ8)


@_kernel
def _nm_group_max(packed, cols, m):
    rows, nb = packed.shape
    best = 0
    for r in range(rows):
        row = packed[r]
        for g0 in range(0, cols, m):
            s = 0
            for c in range(g0, min(cols, g0 + m)):
                s += (row[c >> 3] >> (c & 7)) & 1
            if s > best:
                best = s
                if best == m:
                    return best
    return best


@_kernel
def _nm_group_max_byte(packed, m, pop8):
    # m divides 8 and cols % 8 == 0: groups never straddle bytes
    rows, nb = packed.shape
    best = 0
    gm = (1 << m) - 1
    for r in range(rows):
        row = packed[r]
        for b in range(nb):
            v = row[b]
            for g in range(8 // m):
                s = pop8[(v >> (g * m)) & gm]
                if s > best:
                    best = s
                    if best == m:
                        return best
    return best


def nm_group_max(packed: np.ndarray, cols: int, m: int) -> int:
    """Most kept entries in any group of m consecutive input features (the smallest covering n:m)."""
    if packed.shape[0] == 0:
        return 0
    p = np.ascontiguousarray(packed)
    if 8 % m == 0 and cols % 8 == 0:
        return int(_nm_group_max_byte(p, m, _POP8))
    return int(_nm_group_max(p, cols, m))


@_kernel
def reorder_labels(high, n):
    """Where the BESA authors' reorder.calc sends each node id (rows and columns share ids 0..n-1).

    Their loop does, for each dense column h_i: "replace i by 200, h_i by i, 200 by h_i" on the edge
    lists; as a map on ids that is three merges per step (id 200 is a real node, hence the merges).
    Members of each current id are kept as linked lists so a step costs O(ids moved).
    """
    label = np.arange(n)
    head = np.arange(n)  # first original id whose current label is v (-1: none)
    nxt = np.full(n, -1)  # next original id with the same label
    tail = np.arange(n)

    def replace(a, c):
        if a == c or head[a] < 0:
            return
        o = head[a]
        while o >= 0:
            label[o] = c
            o = nxt[o]
        if head[c] < 0:
            head[c] = head[a]
        else:
            nxt[tail[c]] = head[a]
        tail[c] = tail[a]
        head[a] = -1

    for i in range(high.shape[0]):
        h = high[i]
        replace(i, 200)
        replace(h, i)
        replace(200, h)
    return label


@_kernel
def _beat_conflicts(buf, k, hist):
    # The most column indices of one beat (buf[:k], bank numbers) that land on one bank; hist is
    # zero on entry and on return.
    mx = 0
    for q in range(k):
        hist[buf[q]] += 1
        if hist[buf[q]] > mx:
            mx = hist[buf[q]]
    for q in range(k):
        hist[buf[q]] = 0
    return mx


@_kernel
def _bank_gather(packed, sel, cols, m, banks, scale):
    rows = packed.shape[0]
    S = min(rows, 64)
    hist = np.zeros(banks, np.int64)
    buf = np.empty(m, np.int64)
    beats = 0
    cost = 0
    for s in range(S):
        row = packed[s * rows // S]
        k = 0
        for c in range(cols):
            if (sel[c >> 3] >> (c & 7)) & 1 and (row[c >> 3] >> (c & 7)) & 1:
                buf[k] = c % banks
                k += 1
                if k == m:
                    cost += _beat_conflicts(buf, k, hist)
                    beats += (k + banks - 1) // banks
                    k = 0
        if k:
            cost += _beat_conflicts(buf, k, hist)
            beats += (k + banks - 1) // banks
    if beats == 0:
        return scale
    return max(scale, (cost * scale + beats - 1) // beats)


def bank_gather_scaled(packed: np.ndarray, cols: int, select: np.ndarray, m: int, banks: int, scale: int) -> int:
    """Gather factor x ``scale`` from bank conflicts over the selected (sparse) columns; see
    :func:`simulator.reference.bank_gather_scaled` (same row sample, same rounding)."""
    if packed.shape[0] == 0:
        return scale
    sel = np.packbits(np.asarray(select, bool), bitorder="little")
    sel = np.pad(sel, (0, packed.shape[1] - sel.size))
    return int(_bank_gather(np.ascontiguousarray(packed), sel, cols, m, banks, scale))
