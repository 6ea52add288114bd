"""The modes and the engines that run them: :data:`MODES_REGISTRY` and :func:`evaluate_stats`.

A mode has a fast path (:mod:`simulator.fast`, on the layer's :class:`~simulator.stats.MaskStats`)
and a specification (:mod:`simulator.reference`, on the unpacked bool mask); both compute with the
cost library :mod:`simulator.cost` and return one dict per token count with the same keys (cycles,
bits ...).  Engines: ``cpp`` = the fast path with the compiled core, ``python`` = the fast path with
the cost in Python (slow; the C++ core must agree with it exactly), ``reference`` = the
specification (small layers only).

:func:`evaluate_stats` runs one layer in one mode for several token counts from its statistics
(computed once, reused for every machine); :func:`evaluate` does the same from the packed mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from besa_common.errors import UserError
from simulator import fast
from simulator import reference as ref
from simulator.cost.energy import energy_fj
from simulator.cpp import have_core
from simulator.hardware import Hardware
from simulator.stats import MaskStats

ENGINES = ("cpp", "python", "reference")


def default_engine() -> str:
    return "cpp" if have_core() else "python"


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
        Mode("besa-compat", fast.compat_mode, ref.compat_layer, False, "the BESA authors' method as specified, quirks included"),
        Mode("besa-code", fast.code_mode, ref.code_layer, False, "besa-compat plus their column-reordering bug, bit for bit"),
        Mode("corrected", fast.corrected_mode, ref.corrected_layer, False, "compute-only model without the quirks"),
        Mode("cycle", fast.cycle_mode, ref.cycle_mode, True, "cycle-level model (default)"),
        Mode("dense", fast.dense_mode, ref.dense_mode, True, "dense baseline"),
        Mode("nm", fast.nm_mode, ref.nm_mode, True, "n:m (2:4-style) engine baseline"),
        Mode("systolic", fast.systolic_mode, ref.systolic_mode, True, "SCALE-Sim v3 systolic array (array_rows x array_cols, dataflow), smallest covering n:m"),
    )
}
MODES = tuple(MODES_REGISTRY)
MEMORY_MODES = tuple(m.name for m in MODES_REGISTRY.values() if m.memory)


def get_mode(name: str) -> Mode:
    try:
        return MODES_REGISTRY[name]
    except KeyError:
        raise UserError(f"unknown mode {name!r} (modes: {', '.join(MODES)})") from None


def check_engine(mode: str, engine: str) -> None:
    """A known mode and engine, and the C++ core built when the engine is ``cpp`` (one-line UserError)."""
    get_mode(mode)
    if engine not in ENGINES:
        raise UserError(f"unknown engine {engine!r} (engines: {', '.join(ENGINES)})")
    if engine == "cpp" and not have_core():
        raise UserError("the C++ core simulator._core is not built (pip install --no-build-isolation -e .); use --engine python")


def evaluate(packed: np.ndarray, rows: int, cols: int, mode: str, tokens: list[int], hw: Hardware, engine: str = "cpp") -> list[dict]:
    """One layer (bit-packed keep mask ``[rows, ceil(cols/8)]``) in ``mode`` for each token count.

    Every result has ``cycles``, ``dense_cycles`` and ``nnz``; the memory modes add the breakdown of
    :func:`simulator.cost.partition.evaluate_partition` (bytes by class, stalls, bound, tiles, energy).
    """
    check_engine(mode, engine)
    return evaluate_stats(MaskStats(rows, cols, packed=packed), mode, tokens, hw, engine)


def evaluate_stats(st: MaskStats, mode: str, tokens: list[int], hw: Hardware, engine: str = "cpp") -> list[dict]:
    """:func:`evaluate` from the layer's statistics (computed once, reused for every machine)."""
    check_engine(mode, engine)
    spec = get_mode(mode)
    if engine == "reference":
        keep = np.unpackbits(st.mask(), axis=1, count=st.cols, bitorder="little").astype(bool)
        out = [spec.reference(keep, n, hw) for n in tokens]
    else:
        out = spec.fast(st, tokens, hw, engine)
    if spec.memory:
        for r in out:
            if "energy" not in r:  # a mode with its own energy accounting (systolic) brings it
                r["energy"] = energy_fj(r, hw)
    return out


def _cost_engine(engine: str) -> str:
    """The engine of a dense cost (no mask, so no specification of its own): ``reference`` -> ``python``."""
    return engine if engine != "reference" else "python"


def evaluate_dense(rows: int, cols: int, tokens: int, hw: Hardware, engine: str) -> dict:
    """A dense matrix (the LM head) on this machine: the dense baseline's result."""
    return fast.dense_result(rows, cols, tokens, hw, _cost_engine(engine))


def attention(hidden: int, kv_dim: int, tokens: int, context: int, batch: int, hw: Hardware, engine: str) -> dict:
    """One block's attention + KV cache (see :func:`simulator.cost.dense.attention_block`)."""
    return fast.attention(hidden, kv_dim, tokens, context, batch, hw, _cost_engine(engine))
