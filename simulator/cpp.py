"""The boundary to the C++ core: the optional compiled extension ``simulator._core`` and the typed
hardware it reads.

``core`` is the extension module, or None when it is not built (``pip install --no-build-isolation
-e .`` builds it); every caller checks.  :func:`hw_params` turns a :class:`~simulator.hardware.Hardware`
into the core's typed ``HwParams`` (``cpp/model.hpp``): built from :func:`hw_fields`, which names
every field (the binding refuses a missing or unknown one).
"""

from __future__ import annotations

from simulator.hardware import GATHER_SCALE, INDEX_FORMATS, NM_EFF_SCALE, Hardware

try:  # optional at import time, so that a broken build still gives a clear error where it is needed
    from simulator import _core as core  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - exercised only without the extension
    core = None


def have_core() -> bool:
    return core is not None


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
        "group_size": hw.group_size,
        "group_meta_bits": hw.group_meta_bits,
        "dequant_per_cycle": hw.dequant_per_cycle,
    }


_HW_CACHE: dict = {}


def hw_params(hw: Hardware):
    """The typed C++ HwParams of ``hw`` (cached: Hardware is frozen and hashable)."""
    p = _HW_CACHE.get(hw)
    if p is None:
        p = _HW_CACHE[hw] = core.HwParams(hw_fields(hw))
    return p
