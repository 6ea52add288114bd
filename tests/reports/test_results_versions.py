"""Results written by older builds stay readable: layers.csv of results version 1 (the chosen
threshold in a column ``tau``, now ``dense_threshold``) and sweep tables whose ``tau`` is the
hardware knob."""

from __future__ import annotations

import json

import pandas as pd

from reports import figures as F
from reports.build import build_report
from reports.table import build_table, load_runs, summary_table
from simulator import workload as wl
from simulator.hardware import load_hardware
from simulator.run import simulate, summarize, write_results
from simulator.schema import LAYER_COLUMNS, RESULTS_VERSION, read_layers, upgrade_layers
from simulator.sweep import read_results


def _write_run(root, version_1: bool):
    """A run folder with one simulation (a real one), rewritten to the version-1 layout when asked."""
    hw = load_hardware("vitcod")
    df = simulate(wl.synthetic("48x64*3:skewed=0.5", 1), hw, "cycle", [1, 8])
    sim = root / "run" / "sim" / "vitcod-cycle"
    write_results(sim, df, summarize(df, hw))
    if version_1:
        text = (sim / "layers.csv").read_text()
        (sim / "layers.csv").write_text(text.replace(",dense_threshold,", ",tau,", 1))
        s = json.loads((sim / "summary.json").read_text())
        s["version"] = 1
        (sim / "summary.json").write_text(json.dumps(s))
    return df, sim


def test_current_files_carry_the_new_column_and_version(tmp_path):
    df, sim = _write_run(tmp_path, version_1=False)
    assert "dense_threshold" in df.columns and "tau" not in df.columns
    assert list(pd.read_csv(sim / "layers.csv").columns) == list(LAYER_COLUMNS)
    assert json.loads((sim / "summary.json").read_text())["version"] == RESULTS_VERSION == 2


def test_report_reads_a_version_1_layers_csv(tmp_path):
    df, sim = _write_run(tmp_path, version_1=True)
    old = pd.read_csv(sim / "layers.csv")
    assert "tau" in old.columns and "dense_threshold" not in old.columns
    got = read_layers(sim / "layers.csv")
    assert list(got.columns) == list(LAYER_COLUMNS)
    assert got["dense_threshold"].tolist() == df["dense_threshold"].tolist()
    table = build_table(load_runs([tmp_path]))
    assert "tau" not in table.columns
    assert sorted(table["dense_threshold"].dropna().tolist()) == sorted(df["dense_threshold"].dropna().tolist())
    summ = summary_table(table)
    assert sorted(summ["cycles"].tolist()) == sorted(df.groupby("tokens")["cycles"].sum().tolist())
    out = build_report([tmp_path], tmp_path / "report")
    assert out.is_file()


def test_upgrade_keeps_a_current_column():
    both = pd.DataFrame({"tau": [0.1], "dense_threshold": [0.5]})
    assert upgrade_layers(both) is both  # nothing renamed over an existing column
    assert list(upgrade_layers(pd.DataFrame({"tau": [0.25]})).columns) == ["dense_threshold"]


def test_sweep_reader_keeps_tau_as_the_hardware_knob(tmp_path):
    """In a sweep table ``tau`` is the swept hardware field (not a layers.csv column): read as is,
    and a heatmap axis."""
    rows = [
        {"point_id": f"{i:016x}", "preset": "vitcod", "mode": "cycle", "workload": "w", "tokens": 1, "seed": 0, "tau": tau, "lines": lines}
        | {"status": "ok", "error": "", "cycles": 100 + i, "dense_cycles": 200, "speedup": 200 / (100 + i)}
        for i, (tau, lines) in enumerate([(0.3, 16), (0.3, 32), (0.6, 16), (0.6, 32)])
    ]
    (tmp_path / "sw").mkdir()
    pd.DataFrame(rows).to_csv(tmp_path / "sw" / "results.csv", index=False)
    got = read_results(tmp_path / "sw")
    assert got["tau"].tolist() == [0.3, 0.3, 0.6, 0.6]
    assert F.swept_fields(got) == ["lines", "tau"]
