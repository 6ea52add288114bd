"""Energy of a result by class, in integer femtojoules (cost library)."""

from __future__ import annotations

from simulator.cost.tiles import cdiv
from simulator.hardware import Hardware

ENERGY_CLASSES = ("dram", "sram", "mac", "index")


def energy_fj(r: dict, hw: Hardware) -> dict:
    """Energy of one result by class, integer femtojoules (monotone in every byte and MAC count).

    dram: every DRAM bit; sram: each byte written into its buffer once and read out once (weights ->
    weight buffer, index -> index buffer, activations and KV -> activation buffer, outputs -> output
    buffer); mac: MACs executed (the dense engine multiplies the zeros of its columns too); index:
    index entries decoded (per stored sparse value per token tile).
    """
    bits = {"w": r.get("bits_weights", 0), "i": r.get("bits_index", 0), "a": r.get("bits_act", 0) + r.get("bits_kv", 0), "o": r.get("bits_out", 0)}
    buf = {"w": "e_wbuf_pj_per_byte", "i": "e_ibuf_pj_per_byte", "a": "e_abuf_pj_per_byte", "o": "e_obuf_pj_per_byte"}
    dram = cdiv(sum(bits.values()) * hw.energy_fj("e_dram_pj_per_byte"), 8) if hw.memory else 0
    sram = sum(cdiv(2 * b * hw.energy_fj(buf[k]), 8) for k, b in bits.items())
    out = {"dram": dram, "sram": sram, "mac": r.get("macs", 0) * hw.energy_fj("e_mac_pj"), "index": r.get("index_entries", 0) * hw.energy_fj("e_index_pj")}
    out["total"] = sum(out.values())
    return out
