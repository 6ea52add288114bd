"""One ``besa simulate`` as library calls with explicit parameters: where the masks come from, the
workload, the simulation with the rest of the decoder step, the result folder, the lines printed.

``besa/commands/simulate.py`` parses and checks the command line and calls these in order:
:func:`masks_source` / :func:`default_out`, :func:`load_workload`, :func:`simulate_to_dir`,
:func:`summary_lines`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from besa_common.errors import UserError
from besa_common.extract import extract_masks, is_checkpoint, warn
from safetensors import safe_open
from simulator import workload as wl
from simulator.decoder import add_end_to_end, decoder_rows
from simulator.hardware import Hardware
from simulator.modelcfg import ModelShape
from simulator.run import simulate, summarize, write_results
from simulator.units import gb_per_s


@dataclass(frozen=True)
class MasksSource:
    """Where the masks of a run come from: a masks file (a run directory means its
    ``masks.safetensors``) or a checkpoint to extract them from (:mod:`besa_common.extract`)."""

    path: Path
    checkpoint: bool


@dataclass(frozen=True)
class DecoderStep:
    """The rest of the decoder step to simulate beside the linears (``--context``)."""

    shape: ModelShape
    context: int | tuple[int, ...]  # one for every token count, or one per token count (in --tokens order)
    batch: int

    def contexts(self, tokens: list[int]) -> dict[int, int]:
        """Token count -> its context."""
        ctx = self.context if isinstance(self.context, tuple) else (self.context,) * len(tokens)
        return dict(zip(tokens, ctx))


def masks_source(path: str | Path) -> MasksSource:
    """The masks source of ``--masks PATH``."""
    p = Path(path)
    checkpoint = is_checkpoint(p)
    if p.is_dir() and not checkpoint:
        p = p / "masks.safetensors"
    return MasksSource(p, checkpoint)


def quant_overrides(source: MasksSource | None) -> dict[str, Any]:
    """The hardware fields a pruned + quantized run implies: a masks manifest with ``wbits`` (``besa
    prune --wbits B --group-size G``) means B-bit weights in groups of G, each group with its scale
    (the preset's ``scale_bits``) and a B-bit zero point (the asymmetric grid of :mod:`pruning.quant`).
    Empty for anything else; an unreadable file is left to the masks reader to report."""
    if source is None or source.checkpoint or not source.path.is_file():
        return {}
    try:
        with safe_open(str(source.path), framework="numpy") as fh:
            manifest = json.loads((fh.metadata() or {}).get("manifest") or "{}")
    except Exception:  # reported by the masks reader, with its one-line message
        return {}
    wbits, group = manifest.get("wbits"), manifest.get("group_size")
    if not isinstance(wbits, int) or isinstance(wbits, bool) or wbits >= 16:
        return {}
    return {"weight_bits": wbits, "group_size": group if isinstance(group, int) and not isinstance(group, bool) and group > 0 else 0, "zero_bits": wbits}


def default_out(source: MasksSource, hw: Hardware, mode: str) -> Path:
    """``DIR/sim/<preset>-<mode>`` next to a masks file; a checkpoint has no default (results are
    never written into it)."""
    if source.checkpoint:
        raise UserError("--out DIR is required when --masks is a checkpoint (results are not written into it)")
    return source.path.parent / "sim" / f"{hw.name}-{mode}"


def load_workload(source: MasksSource | None, synthetic: str | None, seed: int) -> tuple[list[wl.LayerWorkload], dict[str, Any]]:
    """The layers to simulate and summary.json's ``source``: the masks of ``source``, else the
    seeded ``synthetic`` workload."""
    if source is not None and source.checkpoint:
        ex = extract_masks(source.path)
        warn(ex)
        return wl.from_packed(ex.packed, ex.shapes, str(source.path)), {"checkpoint": ex.source}
    if source is not None:
        return wl.from_masks(source.path), {"masks": str(source.path)}
    return wl.synthetic(synthetic, seed), {"synthetic": synthetic, "seed": seed}


def simulate_to_dir(
    layers: list[wl.LayerWorkload],
    hw: Hardware,
    mode: str,
    tokens: list[int],
    out: str | Path,
    *,
    engine: str | None = None,
    decoder: DecoderStep | None = None,
    source: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
    progress: bool = False,
    extra: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], Path, Path]:
    """Simulate ``layers`` (and the rest of the decoder step when ``decoder`` is given), write
    ``out/layers.csv`` + ``summary.json`` (+ ``decoder.csv``) as one unit; returns (summary, the
    layers.csv path, the summary.json path)."""
    t0 = time.perf_counter()
    df = simulate(layers, hw, mode, tokens, engine=engine, progress=progress)
    summary = summarize(df, hw)
    dec = None
    if decoder is not None:
        ctx = decoder.contexts(tokens)
        by_context: dict[int, list[int]] = {}
        for n in tokens:
            by_context.setdefault(ctx[n], []).append(n)
        dec = pd.concat([decoder_rows(layers, decoder.shape, hw, ns, c, decoder.batch, engine) for c, ns in by_context.items()], ignore_index=True)
        dec = dec.sort_values("tokens", kind="stable").reset_index(drop=True)
        add_end_to_end(summary, dec, hw)
        context = sorted(set(ctx.values()))
        summary["decoder"] = {
            "model": decoder.shape.name,
            "context": context[0] if len(context) == 1 else {str(n): c for n, c in ctx.items()},
            "batch": decoder.batch,
        }
    if mode == "systolic":
        summary["systolic"] = systolic_summary(df, hw)
    summary["source"] = source or {}
    summary["overrides"] = overrides or {}
    summary.update(extra or {})  # e.g. "sensitivity" (besa simulate --sensitivity)
    summary["wall_s"] = round(time.perf_counter() - t0, 3)
    csv_path, json_path = write_results(out, df, summary, dec)
    return summary, csv_path, json_path


def systolic_summary(df, hw: Hardware) -> dict[str, Any]:
    """What a ``systolic`` run ran: the array, the dataflow and how many layers at each covering n:m."""
    R, C = hw.systolic_shape
    per_layer = df.drop_duplicates("layer")["nm_n"].astype(int)
    runs = {("dense" if n >= hw.nm_m else f"{n}:{hw.nm_m}"): int(c) for n, c in sorted(per_layer.value_counts().items())}
    return {"array_rows": R, "array_cols": C, "dataflow": hw.dataflow, "nm_m": hw.nm_m, "layers_run_as": runs}


def summary_lines(summary: dict[str, Any], hw: Hardware, memory: bool, decoder: DecoderStep | None = None) -> list[str]:
    """The lines ``besa simulate`` prints: per token count the totals (and the whole decoder step),
    then the ridge point of a memory mode (``memory``)."""
    lines = []
    if "systolic" in summary:
        sy = summary["systolic"]
        runs = ", ".join(f"{c} as {k}" for k, c in sy["layers_run_as"].items())
        lines.append(
            f"systolic {sy['array_rows']}x{sy['array_cols']} {sy['dataflow']}: layers run {runs} "
            f"(each mask at its smallest covering n:m, m = nm_m = {sy['nm_m']}; dense if none)"
        )
    for n, t in summary["totals"].items():
        extra = f", vs n:m {t['speedup_vs_nm']:.3f}x" if t.get("speedup_vs_nm") is not None else ""
        bound = f", {round(t['memory_bound_share'] * t['layers'])}/{t['layers']} layers memory-bound" if "memory_bound_share" in t else ""
        energy = f", energy vs dense {t['energy_vs_dense']:.3f}x" if t.get("energy_vs_dense") is not None else ""
        lines.append(
            f"N={n}: {t['cycles']} cycles ({t['time_ms']:.3f} ms at {hw.freq_mhz:g} MHz), speedup vs dense {t['speedup_vs_dense']:.3f}x{extra}{energy}{bound}"
        )
        if "e2e_cycles" in t and decoder is not None:
            ctx = decoder.contexts([int(k) for k in summary["totals"]])[int(n)]
            lines.append(
                f"  whole decoder step (context {ctx}{' = a fresh prompt' if ctx == 0 else ''}, batch {decoder.batch}): {t['e2e_cycles']} cycles "
                f"({t['e2e_us_per_token']:.2f} us/token), speedup vs dense {t['e2e_speedup_vs_dense']:.3f}x"
            )
    if summary.get("ridge_tokens") is not None and memory and "systolic" not in summary:  # no DRAM in systolic
        lines.append(
            f"ridge point of {hw.name} ({hw.macs} MACs/cycle, DRAM {gb_per_s(hw.dram_bytes_per_cycle, hw.freq_mhz):.4g} GB/s at {hw.freq_mhz:g} MHz): "
            f"~{summary['ridge_tokens']:.1f} tokens (fewer tokens in flight -> weight streaming is memory-bound)"
        )
    return lines
