"""Perplexity intervals in the report: per-run intervals (glance table, Pareto error bars) and the
paired comparisons of runs evaluated on the same windows (reports.pplci, ppl_pairs.csv, the page)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from besa_common.bootstrap import paired_ppl, ppl_ci
from reports import figures as F
from reports.build import build_report
from reports.pplci import pairs_table, ranking_lines
from reports.table import build_table, find_experiments, glance_table, label_runs, load_run, summary_table

DEFAULT = Path(__file__).parent / "fixtures" / "default"
W, T = 24, 512
BASE = np.random.default_rng(7).normal(3.3, 0.25, W)  # per-token NLL of each window: which text is hard
SHA = "ab" * 32
# run -> per-token NLL per window: dense; SparseGPT and BESA within noise of each other; Wanda clearly worse
NOISE = np.random.default_rng(8).normal(0.0, 0.05, W)
RUNS = {"dense": BASE, "sparsegpt-s50": BASE + 0.70, "besa-s50": BASE + 0.70 + NOISE, "wanda-s50": BASE + 0.80}


def _write_evals(root: Path, runs=RUNS, sha=SHA) -> None:
    tok = [T] * W
    for run, per_token in runs.items():
        nll = list(per_token * T)
        lo, hi = ppl_ci(nll, tok)
        ev = {"method": run.split("-")[0], "model": "fixture", "ppl": float(math.exp(sum(nll) / (W * T))), "ppl_ci95": [lo, hi]}
        ev.update({"dataset": "wiki", "split": "test", "seqlen": T, "windows": W, "tokens": W * T})
        ev.update({"window_nll": nll, "window_tokens": tok, "windows_sha256": sha})
        (root / run / "eval.json").write_text(json.dumps(ev))


@pytest.fixture()
def exp_dir(tmp_path):
    root = tmp_path / "default"
    shutil.copytree(DEFAULT, root)
    _write_evals(root)
    return root


def _runs(root):
    return label_runs([load_run(p, e) for e, p in find_experiments([root])])


def test_pairs_table_pairs_same_windows_only(exp_dir):
    pairs = pairs_table(_runs(exp_dir))
    assert len(pairs) == 6  # 4 runs with per-window NLLs on the same windows; magnitude (old eval.json) is left out
    assert (pairs["ppl_better"] <= pairs["ppl_worse"]).all() and (pairs["ratio"] >= 1).all()
    got = {(a, b): r for a, b, r in zip(pairs["better"], pairs["worse"], pairs["resolved"])}
    assert got[("dense", "sparsegpt-s50")] and got[("dense", "wanda-s50")]
    assert got[("sparsegpt-s50", "wanda-s50")] and got[("besa-s50", "wanda-s50")]
    sb = [(a, b) for a, b in got if {a, b} == {"sparsegpt-s50", "besa-s50"}][0]
    assert not got[sb]  # within noise: not resolved
    # the numbers are besa_common.bootstrap's paired interval on those windows
    row = pairs[(pairs["better"] == "sparsegpt-s50") & (pairs["worse"] == "wanda-s50")].iloc[0]
    ref = paired_ppl(RUNS["sparsegpt-s50"] * T, RUNS["wanda-s50"] * T, [T] * W)["ratio"]
    assert (row["ratio_low"], row["ratio_high"]) == (ref.low, ref.high) and row["ratio"] == pytest.approx(math.exp(0.1))
    (line,) = ranking_lines(pairs)
    assert line.startswith("dense < ") and " ≈ " in line and line.index("≈") < line.index("< wanda-s50")
    assert "5 of 6 pairs resolved" in line and "24 windows" in line


def test_different_windows_are_not_paired(exp_dir):
    _write_evals(exp_dir, {"wanda-s50": RUNS["wanda-s50"]}, sha="cd" * 32)
    pairs = pairs_table(_runs(exp_dir))
    assert len(pairs) == 3 and "wanda-s50" not in set(pairs["better"]) | set(pairs["worse"])


def test_glance_and_pareto_carry_the_intervals(exp_dir):
    df = build_table(_runs(exp_dir))
    g = glance_table(summary_table(df)).set_index("label")
    lo, hi = ppl_ci(list(RUNS["besa-s50"] * T), [T] * W)
    assert g.loc["besa-s50", "ppl 95% low"] == lo and g.loc["besa-s50", "ppl 95% high"] == hi
    assert pd.isna(g.loc["magnitude-s50", "ppl 95% low"])  # no interval in its eval.json
    fd = F.ppl_vs_speedup(df)
    p = fd.panels["decode"]
    i = p["label"].index("besa-s50")
    assert p["ppl_low"][i] == lo and p["ppl_high"][i] == hi and p["ppl_low"][i] < p["ppl"][i] < p["ppl_high"][i]
    assert "95 % bootstrap interval" in fd.caption


def test_report_page_and_files(exp_dir, tmp_path):
    out = tmp_path / "rep"
    page = build_report([exp_dir], out).read_text()
    assert "<section id='ppl-pairs'>" in page and "href='#ppl-pairs'" in page
    assert "5 of 6 pairs resolved" in page and "magnitude-s50" in page.split("id='ppl-pairs'>")[1].split("</section>")[0]
    csv = pd.read_csv(out / "ppl_pairs.csv")
    assert len(csv) == 6 and set(csv.columns) >= {"better", "worse", "ratio_low", "ratio_high", "resolved"}
    md = (out / "report.md").read_text()
    assert "## Perplexity: paired differences" in md and "| yes |" in md and "| no |" in md
    # a report of runs without per-window NLLs writes no ppl_pairs.csv (and removes a stale one)
    build_report([DEFAULT], out)
    assert not (out / "ppl_pairs.csv").exists()
