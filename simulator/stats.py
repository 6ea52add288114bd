"""Mask statistics on bit-packed keep masks: the hot spots of the simulator, and :class:`MaskStats`,
the statistics of one layer computed once and shared by every machine it is simulated on.

Masks are ``uint8 [rows, ceil(cols/8)]``, keep bits packed along the in-features axis, little bit
order (column c -> byte c // 8, bit c % 8), pad bits 0, 1 = kept (see :mod:`besa_common.masks`).
Every function here has a plain-numpy twin in :mod:`simulator.reference` (on unpacked bool masks);
the tests check they agree.  They run in the C++ core (``cpp/stats.cpp``) when it is built, else in
the numba kernels of :mod:`simulator._stats_numba` (compiled only then: numba costs ~1 s to start).
Counts are int64.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from simulator import _stats_numba as _numba
from simulator.cost.partition import column_order, dense_columns, partition_candidates
from simulator.cpp import core as _core
from simulator.hardware import GATHER_SCALE

# Set to False (tests) to run the numba kernels even when the core is built.
USE_CORE = True


def _fast() -> bool:
    return USE_CORE and _core is not None


def _mask(packed: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(packed, dtype=np.uint8)


def pack_select(select: np.ndarray, nbytes: int) -> np.ndarray:
    """A bool column selection ``[cols]`` packed like a mask row (``nbytes`` bytes, pad bits 0)."""
    sel = np.packbits(np.asarray(select, bool), bitorder="little")
    return np.pad(sel, (0, nbytes - sel.size))


def mask_counts(packed: np.ndarray, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept per column ``[cols]``, kept per row ``[rows]``), in one pass over the mask."""
    if packed.shape[0] == 0:
        return np.zeros(cols, np.int64), np.zeros(0, np.int64)
    if _fast():
        c, r = _core.mask_counts(_mask(packed))
        return c[:cols], r
    return _numba.col_counts(packed, cols), _numba.row_counts(packed)


def col_counts(packed: np.ndarray, cols: int) -> np.ndarray:
    """Kept entries per column (input feature): int64 ``[cols]``."""
    return mask_counts(packed, cols)[0]


def row_counts(packed: np.ndarray, select: np.ndarray | None = None, row_total: np.ndarray | None = None) -> np.ndarray:
    """Kept entries per row, counting only the columns where the bool ``select[cols]`` is True.

    ``row_total`` (kept per row over all columns), when given, lets the count read only the
    smaller side of the selection (a few dense columns: a few bytes per row, not the row)."""
    if select is None:
        return mask_counts(packed, packed.shape[1] * 8)[1]
    if not _fast():
        return _numba.row_counts(packed, select)
    tot = None if row_total is None else np.ascontiguousarray(row_total, np.int64)
    return _core.row_counts_sel(_mask(packed), pack_select(select, packed.shape[1]), tot)


def rle_pads(packed: np.ndarray, cols: int, select: np.ndarray, bits: int) -> np.ndarray:
    """Run-length padding entries per row over the selected (sparse) columns; see reference.rle_pads."""
    if _fast():
        return _core.rle_pads(_mask(packed), pack_select(select, packed.shape[1]), bits)
    # numba's ints are 64-bit: 1 << 64 wraps.  A run of 2^62 zeros never fits in a row, so 62 is exact.
    return _numba.rle_pads(packed, cols, select, min(int(bits), 62))


def nm_group_max(packed: np.ndarray, cols: int, m: int) -> int:
    """Most kept entries in any group of m consecutive input features (the smallest covering n:m)."""
    if packed.shape[0] == 0:
        return 0
    if _fast():
        return int(_core.nm_group_max(_mask(packed), cols, m))
    return _numba.nm_group_max(packed, cols, m)


def bank_gather_scaled(packed: np.ndarray, cols: int, select: np.ndarray, m: int, banks: int, scale: int) -> int:
    """Gather factor x ``scale`` from bank conflicts over the selected (sparse) columns; see
    :func:`simulator.reference.bank_gather_scaled` (same row sample, same rounding)."""
    if packed.shape[0] == 0:
        return scale
    if _fast():
        return int(_core.bank_gather(_mask(packed), pack_select(select, packed.shape[1]), cols, m, banks, scale))
    return _numba.bank_gather_scaled(packed, cols, select, m, banks, scale)


def reorder_labels(high: np.ndarray, n: int) -> np.ndarray:
    """Where the BESA authors' reorder.calc sends each node id (see :mod:`simulator._stats_numba`)."""
    return _numba.reorder_labels(high, n)


# ---------------------------------------------------------------------------- per-layer statistics
class MaskStats:
    """The statistics of one layer's keep mask that no machine parameter changes, computed once and
    shared by every machine, mode and token count the layer is simulated for.

    Eager (one pass over the mask): ``counts`` (kept per column, int64 ``[cols]``), ``row_total``
    (kept per row over all columns, int64 ``[rows]``) and ``nnz``.  Lazy and memoised: the
    partition candidates of a machine (:meth:`candidates`), and for one dense-column set — always
    the G columns with the most kept entries, so G names it — the kept entries per row in the other
    columns (:meth:`row_sparse`), their run-length padding (:meth:`pads`), their bank-conflict
    gather factor (:meth:`gather`); and the largest n:m group (:meth:`group_max`).

    A lazy statistic reads the mask: the array held (``packed``), else ``loader()`` called again
    (which regenerates a synthetic mask: keep workloads memoised, or call :meth:`prepare` for every
    machine first).  :meth:`release` drops the held mask; a pickled copy has neither the mask nor
    the loader, only what was computed.
    """

    def __init__(self, rows: int, cols: int, packed: np.ndarray | None = None, loader: Callable[[], np.ndarray] | None = None):
        if packed is None and loader is None:
            raise ValueError("MaskStats needs the packed mask or a loader")
        self.rows, self.cols = int(rows), int(cols)
        self._packed, self._loader = packed, loader
        self.counts, self.row_total = mask_counts(self.mask(), self.cols)
        self.nnz = int(self.counts.sum())
        self._memo: dict[tuple, object] = {}
        self._keep_mask = False

    # -- the mask
    def mask(self) -> np.ndarray:
        if self._packed is not None:
            return self._packed
        if self._loader is None:
            raise RuntimeError(f"MaskStats ({self.rows}x{self.cols}): a statistic was not prepared and the mask is gone (prepare() for the machine first)")
        return self._loader()

    def release(self) -> "MaskStats":
        """Drop the held mask (lazy statistics then go through the loader) unless :meth:`prepare` had
        to keep it; returns self."""
        if self._keep_mask:
            self._packed = self.mask()
            return self
        self._packed = None
        return self

    def __getstate__(self):  # no mask and no loader (often a closure) travel
        state = dict(self.__dict__)
        state["_loader"] = None
        if not state.get("_keep_mask"):
            state["_packed"] = None
        return state

    def _cached(self, key: tuple, fn):
        if key not in self._memo:
            self._memo[key] = fn()
        return self._memo[key]

    # -- partition candidates
    def candidates(self, hw) -> list[tuple[float, int]]:
        """:func:`simulator.cost.partition.partition_candidates` of this mask on ``hw``: (threshold,
        G) pairs, ascending G; the set is the top G columns (:meth:`dense`)."""
        return self._cached(("cand", hw.partition, hw.tau), lambda: partition_candidates(self.counts, self.rows, hw))

    @property
    def order(self) -> np.ndarray:
        """Columns by kept count, most first (:func:`simulator.cost.partition.column_order`)."""
        return self._cached(("order",), lambda: column_order(self.counts))

    def dense(self, G: int) -> np.ndarray:
        """The top-G dense-column set, bool ``[cols]``."""
        return dense_columns(self.order, G)

    def sparse_kept(self, G: int) -> int:
        """Kept entries outside the top-G columns."""
        cum = self._cached(("cum",), lambda: np.concatenate([[0], np.cumsum(self.counts[self.order])]))
        return self.nnz - int(cum[G])

    def dense_kept(self, dense: np.ndarray) -> int:
        """Kept entries in the dense columns ``dense`` (bool ``[cols]``)."""
        G = int(dense.sum())
        return self._cached(("dkept", G), lambda: int(self.counts[dense].sum()))

    def row_sparse(self, dense: np.ndarray) -> np.ndarray:
        """Kept entries per row outside the dense columns (int64 ``[rows]``)."""
        G = int(dense.sum())
        if G == 0:
            return self.row_total
        return self._cached(("rows", G), lambda: row_counts(self.mask(), ~dense, self.row_total))

    def pads(self, dense: np.ndarray, bits: int) -> int:
        """Run-length padding entries (``bits``-bit runs) of the sparse columns, all rows."""
        G = int(dense.sum())
        if G == self.cols:
            return 0
        return self._cached(("pads", G, bits), lambda: int(rle_pads(self.mask(), self.cols, ~dense, bits).sum()))

    def has_pads(self, dense: np.ndarray, bits: int) -> bool:
        """Whether :meth:`pads` is known (computing it costs a pass over the mask)."""
        return ("pads", int(dense.sum()), bits) in self._memo or bool(dense.all())

    def gather(self, dense: np.ndarray, m: int, banks: int, scale: int) -> int:
        """Gather factor x ``scale`` of the sparse columns on ``banks`` banks, beats of ``m``."""
        G = int(dense.sum())
        return self._cached(("gather", G, m, banks, scale), lambda: bank_gather_scaled(self.mask(), self.cols, ~dense, m, banks, scale))

    def group_max(self, m: int) -> int:
        """Most kept entries in any group of m consecutive columns."""
        return self._cached(("nm", m), lambda: nm_group_max(self.mask(), self.cols, m))

    def prepare(self, hw) -> "MaskStats":
        """Compute now every lazy statistic a cycle / nm simulation on ``hw`` can ask for (all its
        partition candidates), so that it never reads the mask again; returns self.  Under
        ``partition = "optimal"`` the candidates are every top-G set, too many to prepare: the packed
        mask is then kept (through :meth:`release` and pickling) instead."""
        self.group_max(hw.nm_m)
        if hw.partition == "optimal":
            self._keep_mask = True  # the search may read any top-G set: keep the mask (M*K/8 bytes)
            return self
        for _threshold, G in self.candidates(hw):
            dense = self.dense(G)
            self.dense_kept(dense)
            self.row_sparse(dense)
            if hw.index_format == "rle" and not dense.all():
                self.pads(dense, hw.rle_bits)
            if not hw.gather_scaled:
                self.gather(dense, hw.macs_per_line, hw.banks, GATHER_SCALE)
        return self
