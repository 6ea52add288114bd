"""Energy of a result by class, in integer femtojoules (cost library)."""

from __future__ import annotations

from simulator.cost.tiles import cdiv
from simulator.hardware import Hardware

ENERGY_CLASSES = ("dram", "sram", "mac", "index", "static")
# result key of the SRAM bits moved through each buffer -> the buffer's energy field
SRAM_BUFFERS = {"sram_weights": "e_wbuf_pj_per_byte", "sram_index": "e_ibuf_pj_per_byte", "sram_act": "e_abuf_pj_per_byte", "sram_out": "e_obuf_pj_per_byte"}


def energy_fj(r: dict, hw: Hardware) -> dict:
    """Energy of one result by class, integer femtojoules (monotone in every count and in cycles).

    dram: every DRAM bit; sram: the bits each buffer moves (``sram_*``, reads + writes of the tiling's
    loop nest, :func:`simulator.cost.tiles.sram_bits`; a result without them — attention, the
    embedding — writes and reads each DRAM bit once); mac: MACs executed at the accumulate width
    (``e_mac_pj`` is one multiply + one acc_bits add; the dense engine multiplies the zeros of its
    columns too) plus the dequantisation of every quantized weight read (``dequant_weights``);
    index: index entries decoded (per stored sparse value per token tile); static: ``static_w`` for
    the result's cycles.
    """
    dram_b = r.get("bits_weights", 0) + r.get("bits_index", 0) + r.get("bits_act", 0) + r.get("bits_kv", 0) + r.get("bits_out", 0)
    fallback = {
        "sram_weights": 2 * r.get("bits_weights", 0),
        "sram_index": 2 * r.get("bits_index", 0),
        "sram_act": 2 * (r.get("bits_act", 0) + r.get("bits_kv", 0)),
        "sram_out": 2 * r.get("bits_out", 0),
    }
    dram = cdiv(dram_b * hw.energy_fj("e_dram_pj_per_byte"), 8) if hw.memory else 0
    sram = sum(cdiv(r.get(k, fallback[k]) * hw.energy_fj(e), 8) for k, e in SRAM_BUFFERS.items())
    mac = r.get("macs", 0) * hw.energy_fj("e_mac_pj") + r.get("dequant_weights", 0) * hw.energy_fj("e_dequant_pj")
    out = {
        "dram": dram,
        "sram": sram,
        "mac": mac,
        "index": r.get("index_entries", 0) * hw.energy_fj("e_index_pj"),
        "static": r.get("cycles", 0) * hw.static_fj_per_cycle,
    }
    out["total"] = sum(out.values())
    return out
