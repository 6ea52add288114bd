"""Run a workload on a machine: the rows of ``layers.csv`` and the ``summary.json`` built from them.

``simulate(workload, hw, mode, tokens)`` -> pandas DataFrame (one row per layer and token count, the
columns of :data:`simulator.schema.LAYER_COLUMNS` in that order); ``summarize(df, hw)`` -> dict (totals and per-projection
averages per token count, the hardware, versions); ``write_results(out_dir, df, summary)`` writes both
files atomically.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from besa_common.errors import UserError
from besa_common.fileio import write_dir_unit
from simulator import engine as eng
from simulator.cost.energy import ENERGY_CLASSES
from simulator.hardware import FJ_PER_PJ, GATHER_SCALE, Hardware
from simulator.schema import LAYER_COLUMNS, LAYER_INT_COLUMNS, RESULTS_VERSION, SUM_COLUMNS, SUMMARY_FORMAT
from simulator.stats import MaskStats
from simulator.totals import model_totals
from simulator.workload import LayerWorkload, check_magnitudes, check_tokens

SIMULATOR_VERSION = "0.1.0"


def _ratio(a, b):
    return float(a) / float(b) if b else float("nan")


def _bytes(bits):
    return -(-int(bits) // 8)


def _row(layer: LayerWorkload, mode: str, n: int, hw: Hardware, r: dict) -> dict:
    nnz = r["nnz"]
    row = {c: None for c in LAYER_COLUMNS}
    row.update(
        layer=layer.name,
        proj=layer.proj,
        block=layer.block,
        rows=layer.rows,
        cols=layer.cols,
        density=nnz / (layer.rows * layer.cols),
        tokens=n,
        mode=mode,
        preset=hw.name,
        cycles=r["cycles"],
        dense_cycles=r["dense_cycles"],
        speedup_vs_dense=_ratio(r["dense_cycles"], r["cycles"]),
        dense_engine_cycles=r.get("dense_engine_cycles"),
        sparse_engine_cycles=r.get("sparse_engine_cycles"),
        dense_cols=r.get("G"),
        lines_dense=r.get("lines_dense"),
        lines_sparse=r.get("lines_sparse"),
        dense_threshold=r.get("dense_threshold"),
        tries=r.get("tries"),
        time_us=r["cycles"] / hw.freq_mhz,
        utilization=r["utilization"] if "utilization" in r else _ratio(nnz * n, hw.macs * r["cycles"]),
        nm_n=r.get("nm_n"),
        nm_cycles=r.get("nm_cycles"),
        lb_ideal=r.get("lb_ideal"),
        lb_split=r.get("lb_split"),
        shared=r.get("shared"),
        tile_m=r.get("tile_m"),
        tile_n=r.get("tile_n"),
        memory_floor=r.get("memory_floor"),
    )
    if r.get("nm_cycles") is not None:  # only for masks the n:m engine can run (2:4-compliant)
        row["speedup_vs_nm"] = _ratio(r["nm_cycles"], r["cycles"])
    if "gather" in r:
        row["gather"] = r["gather"] / GATHER_SCALE
    if eng.get_mode(mode).memory:
        row.update(
            stall_cycles=r["stall_cycles"],
            bound=r["bound"],
            bytes_weights=_bytes(r["bits_weights"]),
            bytes_index=_bytes(r["bits_index"]),
            bytes_act=_bytes(r["bits_act"]),
            bytes_out=_bytes(r["bits_out"]),
        )
        e = r["energy"]
        row.update(
            {f"energy_{k}_pj": e[k] / FJ_PER_PJ for k in ENERGY_CLASSES},
            energy_pj=e["total"] / FJ_PER_PJ,
            dense_energy_pj=r["dense_energy"] / FJ_PER_PJ,
            energy_vs_dense=_ratio(r["dense_energy"], e["total"]),
        )
    else:
        row["bound"] = "compute"
    return row


def workload_stats(workload: list[LayerWorkload], prepare_for=()) -> list[MaskStats]:
    """The machine-independent statistics of every layer of ``workload``, each mask read ONCE:
    compute them once, then :func:`simulate` the workload on many machines with ``stats=`` and no
    mask is read or generated again for what they share (column / row counts, the nnz).

    ``prepare_for``: machines (:class:`~simulator.hardware.Hardware`) whose every lazy statistic
    (partition candidates' row counts, padding, gather; n:m groups) is computed now as well, so
    simulating them never touches the masks again.  Otherwise a lazy statistic calls the layer's
    ``load()`` again (a synthetic layer regenerates its mask: memoise the workload).  The returned
    objects hold no mask; they pickle.
    """
    out = []
    for layer in workload:
        st = MaskStats(layer.rows, layer.cols, packed=layer.load(), loader=layer.load)
        for hw in prepare_for:
            st.prepare(hw)
        out.append(st.release())
    return out


def simulate(
    workload: list[LayerWorkload],
    hw: Hardware,
    mode: str,
    tokens: list[int],
    engine: str | None = None,
    progress: bool = False,
    stats: list[MaskStats] | None = None,
) -> pd.DataFrame:
    """Simulate every layer of ``workload`` in ``mode`` at each token count; returns layers.csv's rows.

    ``engine``: ``cpp`` (default when built), ``python`` (reference cycle model on fast statistics)
    or ``reference`` (the spec, on unpacked masks; small layers only).  ``stats``: the layers'
    :func:`workload_stats` (same order), to reuse across machines; without it each mask is read once
    here and its statistics are dropped with it.
    """
    tokens = check_tokens(list(tokens), "tokens")
    eng.get_mode(mode)
    if not workload:
        raise UserError("empty workload: no layers to simulate")
    if stats is not None and len(stats) != len(workload):
        raise UserError(f"stats: {len(stats)} layers for a workload of {len(workload)}")
    check_magnitudes(workload, hw, tokens)  # before any layer reaches the int64 engine
    engine = engine or eng.default_engine()
    rows = []
    it = range(len(workload))
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=f"simulate {mode}", unit="layer")
    for i in it:
        layer = workload[i]
        st = stats[i] if stats is not None else MaskStats(layer.rows, layer.cols, packed=layer.load())
        if (st.rows, st.cols) != (layer.rows, layer.cols):
            raise UserError(f"stats of layer {layer.name!r}: {st.rows}x{st.cols}, not {layer.rows}x{layer.cols}")
        for n, r in zip(tokens, eng.evaluate_stats(st, mode, tokens, hw, engine)):
            rows.append(_row(layer, mode, n, hw, r))
    df = pd.DataFrame(rows, columns=list(LAYER_COLUMNS))
    for c in LAYER_INT_COLUMNS:
        df[c] = df[c].astype("Int64")
    return df.sort_values(["tokens"], kind="stable").reset_index(drop=True)


def _clean(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return None if math.isnan(x) else x
    return x


def summarize(df: pd.DataFrame, hw: Hardware) -> dict:
    """summary.json: per token count, totals over all layers and per-projection averages.

    Per projection (q_proj ...), ``avg_cycles`` / ``avg_dense_cycles`` average over the layers and
    ``speedup_vs_dense = avg_dense_cycles / avg_cycles`` — the BESA authors' table.  ``totals`` sums
    cycles over the whole model (``speedup_vs_dense`` = ratio of sums).
    """
    if df.empty:
        raise UserError("no results to summarise")
    mode = str(df["mode"].iloc[0])
    totals, per_proj = {}, {}
    for n, part in df.groupby("tokens", sort=True):
        # the one definition of the model totals (shared with every sweep row): simulator.totals
        t = model_totals(part, [None])[0]
        t.update({c: int(t[c]) for c in SUM_COLUMNS if c in t})  # counts are integers in summary.json
        t["time_ms"] = t["cycles"] / hw.freq_mhz / 1000.0
        t["dense_time_ms"] = t["dense_cycles"] / hw.freq_mhz / 1000.0
        totals[str(int(n))] = {k: _clean(v) for k, v in t.items()}
        pp = {}
        for proj, g in part.groupby("proj", sort=False):
            e = {
                "layers": int(len(g)),
                "avg_cycles": float(g["cycles"].mean()),
                "avg_dense_cycles": float(g["dense_cycles"].mean()),
                "avg_density": float(g["density"].mean()),
            }
            e["speedup_vs_dense"] = _ratio(e["avg_dense_cycles"], e["avg_cycles"])
            if g["nm_cycles"].notna().all():
                e["avg_nm_cycles"] = float(g["nm_cycles"].mean())
                e["speedup_vs_nm"] = _ratio(e["avg_nm_cycles"], e["avg_cycles"])
            pp[str(proj)] = {k: _clean(v) for k, v in e.items()}
        per_proj[str(int(n))] = pp
    return {
        "format": SUMMARY_FORMAT,
        "version": RESULTS_VERSION,
        "simulator_version": SIMULATOR_VERSION,
        "mode": mode,
        "preset": hw.name,
        "hardware": hw.as_dict(),
        "tokens": [int(x) for x in sorted(df["tokens"].unique())],
        # tokens at which dense int8 weight streaming stops being memory-bound: P * b_w / (8 * B)
        "ridge_tokens": (hw.macs * hw.weight_bits / (8.0 * hw.dram_bytes_per_cycle)) if hw.memory else None,
        "totals": totals,
        "per_projection": per_proj,
    }


RESULT_FILES = ("layers.csv", "summary.json", "decoder.csv")


def check_results(df: pd.DataFrame, summary: dict) -> str:
    """Refuse to write impossible numbers; return summary.json's text (strict JSON: no NaN/Infinity).

    Cycle and byte counts must be non-negative integers (an int64 overflow in the engine shows up as a
    negative count) and every float finite; an empty cell (None) is fine.
    """
    for c in df.columns:
        col = df[c]
        if not pd.api.types.is_numeric_dtype(col):
            continue
        vals = pd.to_numeric(col, errors="coerce").dropna().to_numpy(dtype=float)
        if not np.isfinite(vals).all():
            raise UserError(f"simulation result {c!r} is not finite (inputs beyond the model's range?); nothing written")
        if c in LAYER_INT_COLUMNS and (vals < 0).any():
            raise UserError(f"simulation result {c!r} is negative (an integer overflow: inputs too large); nothing written")
    try:
        return json.dumps(summary, indent=2, sort_keys=True, allow_nan=False) + "\n"
    except ValueError:
        raise UserError("simulation summary holds a non-finite number (inputs beyond the model's range?); nothing written") from None


def write_results(out_dir, df: pd.DataFrame, summary: dict, decoder: pd.DataFrame | None = None) -> tuple[Path, Path]:
    """Write ``out_dir/layers.csv`` and ``out_dir/summary.json`` (and ``decoder.csv`` when the
    attention / LM head were simulated) as ONE unit (a temporary directory swapped in,
    :func:`besa_common.fileio.write_dir_unit`): a kill never leaves a new layers.csv beside an old
    summary.json.  ``out_dir`` may hold only :data:`RESULT_FILES`.  Returns the first two paths."""
    out_dir = Path(out_dir)
    text = check_results(df, summary)
    files = {"layers.csv": df.to_csv(index=False, float_format="%.6g", lineterminator="\n"), "summary.json": text}
    if decoder is not None:
        files["decoder.csv"] = decoder.to_csv(index=False, float_format="%.6g", lineterminator="\n")
    write_dir_unit(out_dir, files)
    return out_dir / "layers.csv", out_dir / "summary.json"
