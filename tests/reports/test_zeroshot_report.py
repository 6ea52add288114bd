"""HellaSwag accuracy in the report (reports.zeroshot): columns, paired differences, page, figure.

Hand-made eval.json records on a copy of the default fixture experiment; the expected numbers are
computed by hand from the 0/1 lists below.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from reports.build import build_report
from reports.table import build_table, glance_table, load_runs, summary_table
from reports.zeroshot import accuracy_columns, pairs_table

DEFAULT = Path(__file__).parent / "fixtures" / "default"
IDS = [3, 7, 11, 19, 40, 41, 58, 90, 101, 200]
# per-task acc_norm outcomes on the same 10 tasks
CORRECT = {
    "dense": [1, 1, 1, 1, 0, 1, 0, 1, 1, 0],  # 7 / 10
    "wanda-s50": [1, 0, 1, 1, 0, 1, 0, 0, 1, 0],  # 5 / 10, right only where dense is
    "magnitude-s50": [0, 0, 1, 0, 1, 0, 0, 0, 0, 0],  # 2 / 10
}


def _record(correct: list[int], ids: list[int] = IDS) -> dict:
    n, p = len(correct), sum(correct) / len(correct)
    se = math.sqrt(p * (1 - p) / (n - 1))
    return {"acc": p, "acc_stderr": se, "acc_norm": p, "acc_norm_stderr": se, "n": n, "ids": ids, "correct": correct, "correct_norm": correct}


@pytest.fixture()
def experiment(tmp_path):
    d = tmp_path / "default"
    shutil.copytree(DEFAULT, d)
    for run, correct in CORRECT.items():
        path = d / run / "eval.json"
        ev = json.loads(path.read_text())
        ev["tasks"] = {"hellaswag": _record(correct)}
        path.write_text(json.dumps(ev))
    return d


def test_accuracy_columns_hand_case():
    cols = accuracy_columns({"tasks": {"hellaswag": _record(CORRECT["dense"])}})
    assert cols["hellaswag"] == pytest.approx(70.0)
    assert cols["hellaswag_se"] == pytest.approx(100 * math.sqrt(0.7 * 0.3 / 9))
    assert cols["hellaswag_n"] == 10
    assert accuracy_columns({"ppl": 3.0}) == {"hellaswag": None, "hellaswag_se": None, "hellaswag_n": None}
    assert accuracy_columns({"tasks": {"hellaswag": {"acc_norm": None}}})["hellaswag"] is None


def test_pairs_are_paired_and_hand_computed(experiment):
    pairs = pairs_table(load_runs([experiment])).set_index(["better", "worse"])
    assert len(pairs) == 3  # three scored runs, every pair; runs without HellaSwag are left out
    r = pairs.loc[("dense", "wanda-s50")]
    # differences dense - wanda per task: [0,1,0,0,0,0,0,1,0,0] -> mean 0.2, sd sqrt(0.16 * 10 / 9), se = sd / sqrt(10)
    assert r["diff"] == pytest.approx(20.0)
    assert r["diff_se"] == pytest.approx(100 * math.sqrt(0.16 * 10 / 9) / math.sqrt(10))
    assert r["discordant"] == 2 and r["tasks"] == 10
    assert r["diff_low"] == pytest.approx(r["diff"] - 1.96 * r["diff_se"])
    assert not r["resolved"]  # 0.2 ± 1.96 * 0.133 spans 0
    m = pairs.loc[("dense", "magnitude-s50")]  # [1,1,0,1,-1,1,0,1,1,0]: mean 0.5
    assert m["diff"] == pytest.approx(50.0) and m["acc_better"] == pytest.approx(70.0) and m["acc_worse"] == pytest.approx(20.0)
    assert m["resolved"]


def test_runs_on_different_tasks_are_not_paired(experiment):
    path = experiment / "wanda-s50" / "eval.json"
    ev = json.loads(path.read_text())
    ev["tasks"]["hellaswag"] = _record(CORRECT["wanda-s50"], ids=[i + 1 for i in IDS])
    path.write_text(json.dumps(ev))
    pairs = pairs_table(load_runs([experiment]))
    assert set(zip(pairs["better"], pairs["worse"])) == {("dense", "magnitude-s50")}


def test_glance_shows_accuracy_beside_perplexity(experiment):
    glance = glance_table(summary_table(build_table(load_runs([experiment])))).set_index("label")
    cols = list(glance.columns)
    assert cols.index("HellaSwag %") == cols.index("ppl") + 1 and cols.index("HellaSwag ±") == cols.index("ppl") + 2
    assert glance.loc["dense", "HellaSwag %"] == pytest.approx(70.0)
    assert pd.isna(glance.loc["besa-s50", "HellaSwag %"])
    plain = glance_table(summary_table(build_table(load_runs([DEFAULT]))))
    assert "HellaSwag %" not in plain.columns  # no run scored: no empty column


def test_report_page_has_pairs_and_pareto(experiment, tmp_path):
    out = tmp_path / "rep"
    page = build_report([experiment], out).read_text()
    assert "id='hellaswag-pairs'" in page and "id='fig-acc_vs_speedup'" in page
    assert (out / "figures" / "acc_vs_speedup.svg").is_file()
    csv = pd.read_csv(out / "hellaswag_pairs.csv")
    assert len(csv) == 3
    assert "## HellaSwag: paired differences" in (out / "report.md").read_text()
    # the same experiment without HellaSwag: no section, no figure, and the old pairs file goes away
    for run in CORRECT:
        path = experiment / run / "eval.json"
        ev = json.loads(path.read_text())
        del ev["tasks"]
        path.write_text(json.dumps(ev))
    page = build_report([experiment], out).read_text()
    assert "hellaswag-pairs" not in page and "acc_vs_speedup" not in page
    assert not (out / "hellaswag_pairs.csv").exists()
