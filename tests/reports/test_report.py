"""The report from the hand-made fixture run directories (no torch, no simulator run needed).

``fixtures/default`` mirrors what ``besa run`` writes for the default experiment (same runs,
machines, token counts and what-if grid); ``fixtures/other`` is a second experiment with the same
run names.  The figure tests check the DATA each figure plots (``FigureData.panels``), not pixels.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reports import figures as F
from reports.build import build_report
from reports.fmt import cell, number
from reports.plotkit import boxes_overlap, new_figure, place_labels
from reports.sweep_io import load_sweeps
from reports.table import build_table, glance_table, load_runs, row_sparsity_table, split_layer, summary_table

FIX = Path(__file__).parent / "fixtures"
DEFAULT = FIX / "default"
PRUNED = ["magnitude-s50", "wanda-s50", "sparsegpt-s50", "besa-s50", "wanda-s50-2x4"]


@pytest.fixture(scope="module")
def table():
    return build_table(load_runs([DEFAULT]))


@pytest.fixture(scope="module")
def sweep():
    return load_sweeps([DEFAULT / "whatif"])


def _layers(run: str, sim: str = "vitcod-cycle") -> pd.DataFrame:
    return pd.read_csv(DEFAULT / run / "sim" / sim / "layers.csv")


def _alloc(run: str) -> dict:
    return json.loads((DEFAULT / run / "allocation.json").read_text())["layers"]


def test_split_layer():
    assert split_layer("model.layers.12.mlp.down_proj") == (12, "down_proj")
    assert split_layer("model.layers.0.self_attn.q_proj") == (0, "q_proj")
    assert split_layer("lm_head") == (None, "lm_head")


def test_table_from_fixture(table):
    df = table
    assert set(df["run"]) == {"dense", "besa-s50-w4", *PRUNED}
    assert set(df["experiment"]) == {"default"} and (df["label"] == df["run"]).all()  # one experiment: plain names
    # 2 blocks x 7 projections; vitcod-cycle at tokens 1 and 512 + besa-compat at 1 -> 3 rows per layer
    besa = df[df["run"] == "besa-s50"]
    assert len(besa) == 14 * 3
    assert (besa["ppl"] == 31.7).all() and (besa["method"] == "besa").all()
    w4 = df[df["run"] == "besa-s50-w4"]  # no simulation: its layers (and ppl) still in the table
    assert len(w4) == 14 and w4["cycles"].isna().all() and (w4["wbits"] == 4).all()
    assert (df.loc[df["run"] == "wanda-s50-2x4", "pattern"] == "2:4").all()
    summ = summary_table(df)
    lay = _layers("besa-s50")
    lay = lay[lay["tokens"] == 512]
    row = summ[(summ["label"] == "besa-s50") & (summ["mode"] == "cycle") & (summ["tokens"] == 512)].iloc[0]
    assert row["speedup"] == pytest.approx(lay["dense_cycles"].sum() / lay["cycles"].sum())
    assert row["cycles"] == lay["cycles"].sum()


def test_glance_table(table):
    g = glance_table(summary_table(table)).set_index("label")
    assert list(g.index[:1]) and {"vitcod decode ×", "vitcod prefill ×", "ppl", "realised sparsity", "target sparsity"} <= set(g.columns)
    assert list(g.index[:2]) == ["dense", "magnitude-s50"]  # reading order: dense first, methods in pipeline order
    lay = _layers("wanda-s50")
    dec = lay[lay["tokens"] == 1]
    assert g.loc["wanda-s50", "vitcod decode ×"] == pytest.approx(dec["dense_cycles"].sum() / dec["cycles"].sum())
    assert g.loc["dense", "vitcod decode ×"] == 1.0 and g.loc["dense", "vitcod prefill ×"] == 1.0
    assert pd.isna(g.loc["besa-s50-w4", "vitcod decode ×"]) and g.loc["besa-s50-w4", "ppl"] == 35.0
    # energy columns (read when the simulator writes energy_pj / dense_energy_pj): like speedup, dense / run
    assert g.loc["wanda-s50", "vitcod decode energy ×"] == pytest.approx(dec["dense_energy_pj"].sum() / dec["energy_pj"].sum())
    assert g.loc["dense", "vitcod prefill energy ×"] == 1.0 and "besa besa-compat N=1 energy ×" not in g.columns


def test_allocation_shares_one_centred_scale(table):
    fd = F.allocation(table)
    assert set(fd.panels) == {"besa-s50", "besa-s50-w4"}  # the learned runs
    assert sorted(fd.meta["uniform"]) == sorted(PRUNED[:3] + ["wanda-s50-2x4"])  # one-line note, no blank panel
    assert "Uniform allocation" in fd.caption and "magnitude-s50" in fd.caption
    lims = {(p["vmin"], p["vmax"]) for p in fd.panels.values()}
    assert len(lims) == 1  # one colour means one value in every panel
    vmin, vmax = lims.pop()
    assert vmin == -vmax  # centred on the target
    for run, p in fd.panels.items():
        recs = _alloc(run)
        for i, b in enumerate(p["blocks"]):
            for j, proj in enumerate(p["projections"]):
                want = [r["realised"] for r in recs.values() if r["block"] == b and r["proj"] == proj][0]
                assert p["deviation_pt"][i, j] == pytest.approx((want - 0.5) * 100)
        assert np.nanmax(np.abs(p["deviation_pt"])) <= vmax  # nothing clipped


def test_row_sparsity_distribution(table):
    runs = load_runs([DEFAULT])
    fd = F.row_sparsity(row_sparsity_table(runs))
    assert set(fd.panels) == {"besa-s50", "besa-s50-w4"}
    recs = _alloc("besa-s50")
    for proj, vals in fd.panels["besa-s50"]["values"].items():
        want = np.concatenate([r["row_sparsity"] for r in recs.values() if r["proj"] == proj])
        np.testing.assert_allclose(np.sort(vals), np.sort(want))
    assert len({p["ylim"] for p in fd.panels.values()}) == 1


def test_layer_speedup_has_decode_and_prefill(table):
    fd = F.layer_speedup(table)
    assert fd.meta["phases"] == {"decode": 1, "prefill": 512}
    for run in PRUNED:
        for phase, n in (("decode", 1), ("prefill", 512)):
            p = fd.panels[f"{run}|{phase}"]
            lay = _layers(run)
            lay = lay[lay["tokens"] == n]
            assert sorted(p["speedup"]) == pytest.approx(sorted(lay["dense_cycles"] / lay["cycles"]))
            assert set(p["bound"]) <= {"memory", "compute"}
            # grouped by projection: x stays inside its projection's slot
            assert np.all(np.abs(p["x"] - np.round(p["x"])) < 0.5)
    assert "dense|decode" not in fd.panels


def test_speedup_dots_dense_is_one_and_flagged_when_not(table):
    fd = F.speedup_vs_sparsity(table)
    # vitcod/nm: the 2:4 sibling on the n:m engine (besa run simulates it there); no dense run to check
    assert set(fd.panels) == {"vitcod/cycle N=1", "vitcod/cycle N=512", "besa/besa-compat N=1", "vitcod/nm N=1", "vitcod/nm N=512"}
    assert fd.panels["vitcod/nm N=1"]["label"] == ["wanda-s50-2x4"] and fd.panels["vitcod/nm N=1"]["dense_ok"] is None
    for key in ("vitcod/cycle N=1", "vitcod/cycle N=512"):
        assert fd.panels[key]["dense_speedup"] == [1.0] and fd.panels[key]["dense_ok"] is True
    # the fixture's besa-compat dense run is NOT 1.0x (as the authors' formula gives): flagged visibly
    compat = fd.panels["besa/besa-compat N=1"]
    lay = pd.read_csv(DEFAULT / "dense" / "sim" / "besa-besa-compat" / "layers.csv")
    assert compat["dense_speedup"][0] == pytest.approx(lay["dense_cycles"].sum() / lay["cycles"].sum()) != 1.0
    assert compat["dense_ok"] is False and any("dense run shows" in f for f in fd.flags)
    # marker by pattern: the 2:4 run is a square, unstructured circles, dense a diamond
    p = fd.panels["vitcod/cycle N=1"]
    m = dict(zip(p["label"], p["marker"]))
    assert m["wanda-s50-2x4"] == "s" and m["wanda-s50"] == "o" and m["dense"] == "D"


def test_pareto_has_both_phases_and_labels_do_not_overlap(table):
    fd = F.ppl_vs_speedup(table)
    assert set(fd.panels) == {"decode", "prefill"}
    assert fd.meta["eval"] == "wiki, 4 windows × 512 tokens"
    for phase in ("decode", "prefill"):
        p = fd.panels[phase]
        assert len(p["label_boxes"]) == len(p["label"]) == 6  # every run with a ppl and a simulation
        assert not boxes_overlap(p["label_boxes"])
        # the front, by brute force: no other run is both at least as fast and at least as good
        sp, pp = p["speedup"], p["ppl"]
        want = {
            p["label"][i] for i in range(len(sp)) if not any(sp[j] >= sp[i] and pp[j] <= pp[i] and (sp[j], pp[j]) != (sp[i], pp[i]) for j in range(len(sp)))
        }
        assert set(p["front"]) == want and "dense" in want and "magnitude-s50" not in want
    assert "4 windows × 512 tokens" in fd.figure.axes[0].get_ylabel()


def test_roofline_dense_equivalent_and_anomalies(table):
    fd = F.roofline(table)
    assert set(fd.panels) == {"decode", "prefill"}
    pre = fd.panels["prefill"]
    assert not pre["anomaly"].any() and not fd.flags
    # dense-equivalent: a pruned layer that is faster than dense plots HIGHER than its dense twin
    labels, layers = np.array(pre["label"]), np.array(pre["layer"])
    name = "model.layers.0.mlp.up_proj"
    dense_y = pre["perf"][(labels == "dense") & (layers == name)][0]
    besa_y = pre["perf"][(labels == "besa-s50") & (layers == name)][0]
    lay = _layers("besa-s50").query("tokens == 512 and layer == @name").iloc[0]
    assert besa_y / dense_y == pytest.approx(lay["dense_cycles"] / lay["cycles"])
    # a layer made impossibly fast (above the memory roof) is flagged
    bad = table.copy()
    sel = (bad["label"] == "wanda-s50") & (bad["layer"] == name) & (bad["tokens"] == 1) & (bad["mode"] == "cycle")
    bad.loc[sel, "cycles"] = 1
    fd2 = F.roofline(bad)
    assert fd2.panels["decode"]["anomaly"].sum() == 1 and "above a roof" in fd2.flags[0]


def test_sweep_absolute_panel_shared_limits_and_ghz(sweep):
    fd = F.sweep_heatmaps(sweep)
    kinds = {k.rsplit("|", 1)[1] for k in fd.panels}
    assert kinds == {"absolute", "speedup"}
    assert {p["tokens"] for p in fd.panels.values()} == {1, 512}
    sp = [p for p in fd.panels.values() if p["value"] == "speedup"]
    assert len({(p["vmin"], p["vmax"]) for p in sp}) == 1  # one speedup scale for every N
    assert sp[0]["vmin"] * sp[0]["vmax"] == pytest.approx(1.0) and sp[0]["vmax"] >= 2.0  # centred at 1x, not auto-stretched
    ab = fd.panels["N=512||absolute"]
    ok = sweep[(sweep["status"] == "ok") & (sweep["tokens"] == 512)]
    pt = ok[(ok["lines"] == 64) & (ok["dram_bytes_per_cycle"] == 82.5)].iloc[0]
    i, j = ab["y"].index(82.5), ab["x"].index(64)
    assert ab["grid"][i, j] == pytest.approx(512 * 500e6 / pt["cycles"])  # tokens/s at vitcod's 500 MHz
    assert ab["mhz"] == 500.0
    labels = [t.get_text() for t in fd.figure.axes[0].get_yticklabels()]
    assert "82.5" in labels and "165" in labels  # 164.93 B/cycle x 500 MHz = 82.5 GB/s
    assert "GB/s" in fd.figure.axes[0].get_ylabel()


def test_sweep_third_field_is_a_facet_not_a_median(sweep):
    two = pd.concat([sweep.assign(index_format="bitmap"), sweep.assign(index_format="csr", cycles=sweep["cycles"] * 2)], ignore_index=True)
    fd = F.sweep_heatmaps(two)
    assert fd.meta["facets"] == ["index_format"]
    facets = {p["facet"] for p in fd.panels.values()}
    assert facets == {"index_format=bitmap", "index_format=csr"}
    a = fd.panels["N=1|index_format=bitmap|absolute"]["grid"]
    b = fd.panels["N=1|index_format=csr|absolute"]["grid"]
    np.testing.assert_allclose(a, 2 * b)  # each facet keeps its own values


def test_two_experiments_with_equal_run_names_stay_apart(tmp_path):
    runs = load_runs([DEFAULT, FIX / "other"])
    labels = {r.label for r in runs}
    assert {"default/besa-s50", "other/besa-s50", "default/dense", "other/dense"} <= labels
    df = build_table(runs)
    summ = summary_table(df)
    for exp, ppl in (("default", 31.7), ("other", 29.8)):
        row = summ[(summ["label"] == f"{exp}/besa-s50") & (summ["tokens"] == 1) & (summ["mode"] == "cycle")]
        assert len(row) == 1 and row["ppl"].iloc[0] == ppl and row["experiment"].iloc[0] == exp
        lay = pd.read_csv(FIX / exp / "besa-s50" / "sim" / "vitcod-cycle" / "layers.csv").query("tokens == 1")
        assert row["cycles"].iloc[0] == lay["cycles"].sum()  # not doubled by a merge
    fd = F.compare_experiments(df)
    assert fd.meta["experiments"] == ["default", "other"]
    ppl = fd.panels["perplexity"]
    got = {(e, r): v for e, r, v in zip(ppl["experiment"], ppl["run"], ppl["value"])}
    assert got[("default", "besa-s50")] == 31.7 and got[("other", "besa-s50")] == 29.8
    dec = fd.panels["decode speedup (N = 1)"]
    assert len([r for r in dec["run"] if r == "besa-s50"]) == 2
    page = build_report([DEFAULT, FIX / "other"], tmp_path / "cmp").read_text()
    assert "default/besa-s50" in page and "other/besa-s50" in page and 'id="img-compare"' in page
    assert "<th>experiment</th>" in page
    with pytest.raises(F.NoData):
        F.compare_experiments(build_table(load_runs([DEFAULT])))


def test_report_page(tmp_path):
    out = tmp_path / "rep"
    path = build_report([DEFAULT], out, formats=["pdf"])
    assert path == out / "report.html"
    page = path.read_text()
    toc = re.search(r"<nav id='toc'>(.*?)</nav>", page, re.S).group(1)
    targets = re.findall(r"href='#([\w-]+)'", toc)
    for t in targets:
        assert f"<section id='{t}'>" in page, t
    assert targets[0] == "glance" and page.index("id='glance'") < page.index("id='fig-allocation'")
    for fig_id in ("allocation", "row_sparsity", "layer_speedup", "speedup_vs_sparsity", "ppl_vs_speedup", "siblings", "roofline", "sweep"):
        assert f"fig-{fig_id}" in targets, fig_id
    assert "sibling-table" in targets and "2:4 faster in 4, tied in 0" in page  # the equal-sparsity comparison and its verdict
    imgs = re.findall(r'<img id="img-([\w-]+)"[^>]*src="data:image/png;base64,[A-Za-z0-9+/=]{200,}"', page)
    assert len(imgs) == 8 and "compare" not in page.split("</nav>")[0]
    for fid in imgs:  # every drawn figure is also a file, SVG always, PDF on request
        assert (out / "figures" / f"{fid}.svg").read_text().lstrip().startswith("<?xml")
        assert (out / "figures" / f"{fid}.pdf").read_bytes()[:4] == b"%PDF"
        assert f'href="figures/{fid}.svg"' in page
    assert not re.search(r"\d\.\d+e[+-]\d", page.split("<section id='fig-allocation'>")[0])  # readable numbers
    assert "Not shown" not in page
    assert not re.search(r'src="(?!data:)', page) and not re.search(r"<link[^>]*href='(?!data:)", page)  # self-contained
    assert "besa-s50-w4: no simulation" in page and "FIXTURE" in page
    assert "dense run shows" in page  # the besa-compat dense != 1.0x flag reaches the page
    for name in ("table.csv", "summary.csv", "siblings.csv", "report.md"):
        assert (out / name).is_file()
    assert "## At a glance" in (out / "report.md").read_text()
    assert not list(out.rglob(".*.tmp"))


def test_report_without_sweep_or_sim_says_so(tmp_path):
    import shutil

    runs = tmp_path / "runs"
    shutil.copytree(DEFAULT / "besa-s50-w4", runs / "besa-s50-w4")
    page = build_report([runs], tmp_path / "o").read_text()
    assert "Not shown: no sweep results" in page
    assert "Not shown: no simulated" in page
    assert 'id="img-allocation"' in page


def test_cli_report_and_bad_input(tmp_path):
    def besa(*a):
        return subprocess.run([sys.executable, "-m", "besa.cli", "report", *a], capture_output=True, text=True)

    r = besa(str(DEFAULT), "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert f"report: {tmp_path / 'report.html'}" in r.stdout
    r = besa(str(tmp_path / "nope"))
    assert r.returncode == 2 and "not a directory" in r.stderr and "Traceback" not in r.stderr
    r = besa(str(DEFAULT), "--out", str(tmp_path / "x"), "--format", "gif")
    assert r.returncode == 2 and "--format 'gif'" in r.stderr and not (tmp_path / "x").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    r = besa(str(empty))
    assert r.returncode == 2 and "nothing to report" in r.stderr


def test_readable_numbers():
    assert number(27380.0) == "27,380" and number(27380.4) == "27,380" and number(0.012345) == "0.01235"
    assert number(3.14159) == "3.142" and number(123.456) == "123.5"
    assert cell("speedup", 1.2345) == "1.23×" and cell("vitcod decode ×", 0.5) == "0.50×"
    assert cell("realised_sparsity", 0.4952) == "49.5%" and cell("cycles", 2.738e4) == "27,380"
    assert cell("ppl", float("nan")) == "" and cell("label", "besa-s50") == "besa-s50"


@given(st.floats(min_value=-1e12, max_value=1e12, allow_nan=False))
def test_numbers_never_use_exponents(v):
    text = number(v)
    assert "e" not in text.lower()
    if abs(v) >= 1e-3:
        assert float(text.replace(",", "")) == pytest.approx(v, rel=1e-3, abs=1e-3)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=8))
def test_label_placer_never_overlaps_when_room(points):
    fig, axes = new_figure(1, 1, 6, 4)
    ax = axes[0, 0]
    ax.set_xlim(-0.5, 1.5)
    ax.set_ylim(-0.5, 1.5)
    fig.draw_without_rendering()
    fig.set_layout_engine("none")
    xs, ys = zip(*points)
    boxes = place_labels(ax, xs, ys, [f"run-{i}" for i in range(len(points))])
    assert not boxes_overlap(boxes)


def test_reports_never_import_torch(tmp_path):
    code = (
        "import sys; import reports.build, reports.table, reports.figures, reports.html, simulator.sweep, besa.commands.sweep, besa.commands.report; "
        "from reports.build import build_report; build_report([%r], %r); assert 'torch' not in sys.modules, 'torch imported'"
    ) % (str(DEFAULT), str(tmp_path / "o"))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
