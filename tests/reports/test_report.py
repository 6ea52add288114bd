"""The report from the hand-made fixture run directories (no torch, no simulator needed)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from reports.cli import build_report
from reports.figures import FIGURES
from reports.table import build_table, load_runs, split_layer, summary_table

FIX = Path(__file__).parent / "fixtures"


def test_split_layer():
    assert split_layer("model.layers.12.mlp.down_proj") == (12, "down_proj")
    assert split_layer("model.layers.0.self_attn.q_proj") == (0, "q_proj")
    assert split_layer("lm_head") == (None, "lm_head")


def test_table_from_fixture():
    runs = load_runs([FIX / "runs"])
    assert {r.name for r in runs} == {"dense", "magnitude-s50", "wanda-s50", "wanda-s50-2x4", "besa-s50", "besa-s50-w4"}
    df = build_table(runs)
    # 2 blocks x 7 projections; vitcod-cycle at tokens 1 and 256 + besa-compat at 1 -> 3 rows per layer
    besa = df[df["run"] == "besa-s50"]
    assert len(besa) == 14 * 3
    assert set(besa["projection"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert (besa["ppl"] == 31.7).all() and (besa["method"] == "besa").all()
    # the run without a simulation still has its layers (and its ppl) in the table
    w4 = df[df["run"] == "besa-s50-w4"]
    assert len(w4) == 14 and w4["cycles"].isna().all() and (w4["wbits"] == 4).all()
    assert (df.loc[df["run"] == "wanda-s50-2x4", "pattern"] == "2:4").all()
    summ = summary_table(df)
    dense = summ[(summ["run"] == "dense") & (summ["mode"] == "cycle")]
    assert (dense["speedup"] == 1.0).all()  # all weights kept -> exactly the dense baseline
    # whole-model speedup is sum(dense)/sum(cycles), recomputed by hand from the CSV
    lay = pd.read_csv(FIX / "runs/besa-s50/sim/vitcod-cycle/layers.csv")
    lay = lay[lay["tokens"] == 256]
    row = summ[(summ["run"] == "besa-s50") & (summ["mode"] == "cycle") & (summ["tokens"] == 256)].iloc[0]
    assert row["speedup"] == pytest.approx(lay["dense_cycles"].sum() / lay["cycles"].sum())


def test_report_references_every_figure(tmp_path):
    out = tmp_path / "rep"
    path = build_report([FIX / "runs", FIX / "sweep"], out)
    assert path == out / "report.html"
    page = path.read_text()
    for fig_id in FIGURES:
        assert f"id='fig-{fig_id}'" in page, fig_id
        # every figure is drawn (an embedded PNG), not replaced by a "Not shown" note
        assert re.search(rf'id="img-{fig_id}[\w-]*"[^>]*src="data:image/png;base64,[A-Za-z0-9+/=]{{200,}}"', page), fig_id
    # one allocation heatmap per pruned run, none for dense
    for run in ("besa-s50", "wanda-s50", "magnitude-s50", "wanda-s50-2x4"):
        assert f'id="img-allocation-{run}"' in page
    assert 'id="img-allocation-dense"' not in page
    assert "Not shown" not in page
    # self-contained: no external image or stylesheet
    assert not re.search(r'src="(?!data:)', page) and "<link" not in page
    # the gap is said, not hidden
    assert "besa-s50-w4: no simulation" in page
    assert "FIXTURE" in page
    for name in ("table.csv", "summary.csv", "report.md"):
        assert (out / name).is_file()
    assert not list(out.glob(".*.tmp"))


def test_report_without_sweep_or_sim_says_so(tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(FIX / "runs" / "besa-s50-w4", runs / "besa-s50-w4")
    page = build_report([runs], tmp_path / "o").read_text()
    assert "Not shown: no sweep results" in page
    assert "Not shown: no simulated" in page
    assert 'id="img-allocation-besa-s50-w4"' in page


def test_cli_report_and_bad_dir(tmp_path):
    r = subprocess.run([sys.executable, "-m", "besa.cli", "report", str(FIX / "runs"), "--out", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"report: {tmp_path / 'report.html'}" in r.stdout
    r = subprocess.run([sys.executable, "-m", "besa.cli", "report", str(tmp_path / "nope")], capture_output=True, text=True)
    assert r.returncode == 2 and "not a directory" in r.stderr and "Traceback" not in r.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    r = subprocess.run([sys.executable, "-m", "besa.cli", "report", str(empty)], capture_output=True, text=True)
    assert r.returncode == 2 and "nothing to report" in r.stderr


def test_reports_never_import_torch():
    code = ("import sys; import reports.cli, reports.table, reports.figures, reports.html, simulator.sweep, besa.cmd_sweep; "
            "from reports.cli import build_report; build_report([%r], %r); assert 'torch' not in sys.modules, 'torch imported'") % (
        str(FIX / "runs"), "/tmp/_besa_report_notorch")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
