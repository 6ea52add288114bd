"""The results schema, declared ONCE: the columns of ``layers.csv`` / ``decoder.csv``, which are
integers and which sum to a model total, the fields of a sweep's results table, and how files of
an older results version are read.

Used by :mod:`simulator.run` (layers.csv, summary.json), :mod:`simulator.totals` (model totals),
:mod:`simulator.decoder` (decoder.csv), :mod:`simulator.sweep` (the results store, the worker's
rows) and :mod:`reports` (tables, sweep heatmaps).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

# ---------------------------------------------------------------------------- layers.csv + summary.json
# The version of layers.csv + summary.json (summary.json's "version").  2: the threshold of the chosen
# dense-column set is the column ``dense_threshold`` (version 1 called it ``tau``, the name of the
# hardware knob).
RESULTS_VERSION = 2
SUMMARY_FORMAT = "besa-sim-summary"
# Column names of older results versions -> their current name (applied by :func:`upgrade_layers`).
LEGACY_LAYER_COLUMNS = {"tau": "dense_threshold"}

# Fixed header order of layers.csv.  Columns a mode does not define are left empty.
LAYER_COLUMNS = (
    "layer",
    "proj",
    "block",
    "rows",
    "cols",
    "density",
    "tokens",
    "mode",
    "preset",
    "cycles",
    "dense_cycles",
    "speedup_vs_dense",
    "nm_cycles",
    "speedup_vs_nm",
    "nm_n",
    "dense_engine_cycles",
    "sparse_engine_cycles",
    "stall_cycles",
    "bytes_weights",
    "bytes_index",
    "bytes_act",
    "bytes_out",
    "utilization",
    "bound",
    "lb_ideal",
    "lb_split",
    "dense_cols",
    "lines_dense",
    "lines_sparse",
    "dense_threshold",  # the threshold naming the chosen dense-column set (cycle, besa-compat)
    "tries",
    "time_us",
    # added by the fidelity work (docs/simulator.md): lanes time-shared, chosen tiles, gather factor,
    # compulsory-traffic floor, energy by class (pJ) and against the dense baseline
    "shared",
    "tile_m",
    "tile_n",
    "gather",
    "memory_floor",
    "energy_pj",
    "energy_dram_pj",
    "energy_sram_pj",
    "energy_mac_pj",
    "energy_index_pj",
    "energy_static_pj",  # static power x time (issue 20); SRAM from the tiling's loop nest
    "dense_energy_pj",
    "energy_vs_dense",
)
# layers.csv columns holding counts (nullable integers; never negative in a written file)
LAYER_INT_COLUMNS = (
    "block",
    "rows",
    "cols",
    "tokens",
    "cycles",
    "dense_cycles",
    "nm_cycles",
    "nm_n",
    "dense_engine_cycles",
    "sparse_engine_cycles",
    "stall_cycles",
    "bytes_weights",
    "bytes_index",
    "bytes_act",
    "bytes_out",
    "lb_ideal",
    "lb_split",
    "dense_cols",
    "lines_dense",
    "lines_sparse",
    "tries",
    "shared",
    "tile_m",
    "tile_n",
    "memory_floor",
)
# layers.csv columns whose model total is their sum over the layers (simulator.totals)
SUM_COLUMNS = (
    "cycles",
    "dense_cycles",
    "nm_cycles",
    "stall_cycles",
    "dense_engine_cycles",
    "sparse_engine_cycles",
    "bytes_weights",
    "bytes_index",
    "bytes_act",
    "bytes_out",
    "lb_ideal",
    "lb_split",
)
# layers.csv energy columns (pJ) whose sums are the model's energy totals (µJ)
ENERGY_SUM_COLUMNS = ("energy_pj", "dense_energy_pj")

# decoder.csv (besa simulate --context): attention per block, the LM head, the embedding lookup
DECODER_COLUMNS = (
    "layer",
    "kind",
    "block",
    "tokens",
    "context",
    "batch",
    "cycles",
    "compute_cycles",
    "memory_cycles",
    "stall_cycles",
    "bound",
    "bytes_kv",
    "bytes_weights",
    "bytes_act",
    "bytes_out",
    "macs",
    "energy_pj",
    "time_us",
)


def upgrade_layers(df: pd.DataFrame) -> pd.DataFrame:
    """A layers.csv frame of any results version with the current column names (an older file's
    ``tau`` becomes ``dense_threshold``); the frame itself when nothing is renamed."""
    rename = {old: new for old, new in LEGACY_LAYER_COLUMNS.items() if old in df.columns and new not in df.columns}
    return df.rename(columns=rename) if rename else df


def read_layers(path: str | Path) -> pd.DataFrame:
    """Read a layers.csv of any results version (see :func:`upgrade_layers`)."""
    return upgrade_layers(pd.read_csv(path))


# ---------------------------------------------------------------------------- sweep results
# A sweep row: the point's id, its parameters (plus one column per swept hardware field, named after
# the field), its status, and the model totals of simulator.totals under the names below.
# ``hw_id`` / ``workload_id``: digests of the resolved machine (table ``machines`` holds its fields) and of
# the workload's contents (simulator.sweep.identity); ``context`` / ``batch``: the decoder step (context
# empty = the linears only).
SWEEP_POINT_FIELDS = ("point_id", "preset", "mode", "workload", "tokens", "context", "batch", "seed", "hw_id", "workload_id", "simulator_version")
SWEEP_STATUS_FIELDS = ("status", "error", "wall_s", "finished_at")
# model total (simulator.totals) -> its sweep column, where the names differ
SWEEP_TOTAL_NAMES = {"speedup_vs_dense": "speedup", "e2e_speedup_vs_dense": "e2e_speedup"}
SWEEP_TOTAL_FIELDS = (
    "cycles",
    "dense_cycles",
    "nm_cycles",
    "speedup",
    "speedup_vs_nm",
    "stall_cycles",
    "dense_engine_cycles",
    "sparse_engine_cycles",
    "bytes_weights",
    "bytes_index",
    "bytes_act",
    "bytes_out",
    "memory_bound_share",
    "layers",
    "utilization",
    "lb_ideal",
    "lb_split",
    "energy_uj",
    "dense_energy_uj",
    "energy_vs_dense",
    # the machine (so per-MAC and per-second figures need no join) and per-token figures
    "clock_mhz",
    "macs_per_cycle",
    "bandwidth_bytes_per_s",
    "time_us",
    "us_per_token",
    "energy_uj_per_token",
    # the whole decoder step (points with a context): simulator.decoder.add_end_to_end
    "attention_cycles",
    "decoder_rest_cycles",
    "e2e_cycles",
    "e2e_dense_cycles",
    "e2e_speedup",
    "e2e_us_per_token",
    "e2e_energy_uj",
    "e2e_energy_vs_dense",
    "e2e_energy_uj_per_token",
)
# Columns that are not swept parameters (the report finds the swept axes with this).
RESULT_FIELDS = frozenset({"point_id", "seed", *SWEEP_STATUS_FIELDS, *SWEEP_TOTAL_FIELDS})
# Columns of a sweep row that are not hardware fields (the point, its status).
SWEEP_NON_HARDWARE = frozenset({*SWEEP_POINT_FIELDS, *SWEEP_STATUS_FIELDS})
# First columns of the results table, in this order; the rest follow in the order they appeared.
SWEEP_FIRST_COLUMNS = (*SWEEP_POINT_FIELDS, "status", "error")
# Preferred axes of the sweep heatmaps, when swept (the most asked what-if questions first).
SWEEP_AXES = ("lines", "dram_bytes_per_cycle", "macs_per_line", "index_format", "split", "tau", "weight_buffer_bytes", "index_buffer_bytes")
