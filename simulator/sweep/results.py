"""The result columns of a sweep point, from its machine's simulated layers.

For each point: the model totals of :func:`simulator.totals.model_totals` (the numbers summary.json
holds, under the results-table names), the machine's clock, MACs per cycle and DRAM bandwidth in
bytes per second, the time and energy per token, and — when the point has a ``context`` — the rest
of the decoder step (attention + KV cache, LM head, embeddings: :mod:`simulator.decoder`) with the
end-to-end totals (:func:`simulator.decoder.add_end_to_end`, the same code as ``besa simulate
--context``).  So throughput-per-MAC and energy-per-token figures need no join.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from simulator.decoder import add_end_to_end, check_model, decoder_rows
from simulator.hardware import Hardware
from simulator.schema import RESULT_FIELDS, SWEEP_TOTAL_NAMES
from simulator.totals import model_totals


def _layer_list(layers) -> list[SimpleNamespace]:
    """The workload's layers (name, proj, block, rows, cols) from a layers.csv frame."""
    first = layers[layers["tokens"] == layers["tokens"].iloc[0]]
    cols = [first[c].tolist() for c in ("layer", "proj", "block", "rows", "cols")]
    return [SimpleNamespace(name=n, proj=p, block=int(b), rows=int(r), cols=int(c)) for n, p, b, r, c in zip(*cols)]


def machine_columns(hw: Hardware) -> dict[str, Any]:
    """Clock, MACs per cycle and DRAM bandwidth (bytes per second) of a machine."""
    return {"clock_mhz": hw.freq_mhz, "macs_per_cycle": hw.macs, "bandwidth_bytes_per_s": hw.dram_bytes_per_cycle * hw.freq_mhz * 1e6}


def _per_token(row: dict[str, Any], hw: Hardware, tokens: int) -> None:
    if "cycles" in row:
        row["time_us"] = row["cycles"] / hw.freq_mhz
        row["us_per_token"] = row["time_us"] / tokens
    if "energy_uj" in row:
        row["energy_uj_per_token"] = row["energy_uj"] / tokens


def point_results(layers, points: list, engine: str | None = None) -> list[dict[str, Any]]:
    """The result columns of ``points`` (one machine: same workload, hardware and mode) from the
    layers table of their machine (every token count they ask for)."""
    hw = points[0].hardware
    totals = model_totals(layers, [p.tokens for p in points])
    decoders: dict[tuple[int, int], Any] = {}
    wl_layers = None
    out = []
    for p, tot in zip(points, totals):
        row = dict(tot)
        if p.context is not None and "cycles" in row:
            key = (p.context, p.batch)
            if key not in decoders:
                if wl_layers is None:
                    wl_layers = _layer_list(layers)
                    check_model(p.model, wl_layers)
                toks = sorted({q.tokens for q in points if (q.context, q.batch) == key})
                decoders[key] = decoder_rows(wl_layers, p.model, hw, toks, p.context, p.batch, engine)
            summary = {"totals": {str(p.tokens): row}}
            add_end_to_end(summary, decoders[key], hw)
            row["e2e_energy_uj_per_token"] = row["e2e_energy_uj"] / p.tokens if "e2e_energy_uj" in row else None
        for name, sweep_name in SWEEP_TOTAL_NAMES.items():
            if name in row:
                row[sweep_name] = row.pop(name)
        _per_token(row, hw, p.tokens)
        row.update(machine_columns(hw))
        out.append({k: v for k, v in row.items() if k in RESULT_FIELDS})
    return out
