"""Equal-sparsity siblings: the pairing (besa.experiment), what ``besa run`` plans and records for it
(besa.experiment.plan), and the report's comparison (reports.siblings) — no torch, no pruning."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from besa.experiment.plan import plan_sims, sibling_record, sibling_sims, write_sibling_files
from besa.experiment.spec import RunSpec, SiblingSettings, load_experiment, pair_siblings, parse_experiment, run_name
from besa_common.errors import UserError
from reports.siblings import sibling_table, verdicts
from reports.table import build_table, load_runs, summary_table
from reports.writers import write_tables

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TOML = ROOT / "configs" / "experiments" / "default.toml"
FIX = Path(__file__).parent / "fixtures" / "default"


def spec(method, sparsity=0.5, pattern="unstructured", wbits=16) -> RunSpec:
    return RunSpec(run_name(method, sparsity, pattern, wbits), method, sparsity, pattern, wbits)


# ------------------------------------------------------------------------------------------ pairing
def test_default_experiment_pairs_every_50_percent_run_with_wanda_2x4():
    exp = load_experiment(DEFAULT_TOML)
    pairs, added = exp.sibling_plan()
    assert added == []  # the default experiment already has Wanda 2:4
    assert {r: p.sibling for r, p in pairs.items()} == {
        r: "wanda-s50-2x4" for r in ("magnitude-s50", "wanda-s50", "sparsegpt-s50", "besa-s50", "besa-admm-s50")
    }
    assert pairs["wanda-s50"].why == "same-method" and pairs["besa-s50"].why == "fallback"
    assert "dense" not in pairs and "wanda-s50-2x4" not in pairs  # dense and n:m runs have no sibling


def test_same_method_is_preferred_then_the_fallback_is_added_once_per_wbits():
    specs = [spec("dense", 0.0), spec("besa"), spec("sparsegpt"), spec("magnitude"), spec("besa", pattern="2:4"), spec("magnitude", wbits=4)]
    pairs, added = pair_siblings(specs, SiblingSettings())
    assert pairs["besa-s50"].sibling == "besa-s50-2x4" and pairs["besa-s50"].why == "same-method" and not pairs["besa-s50"].added
    # no sparsegpt 2:4 -> Wanda 2:4 at the same weight bits, added ONCE and shared
    assert pairs["sparsegpt-s50"].sibling == pairs["magnitude-s50"].sibling == "wanda-s50-2x4"
    assert pairs["sparsegpt-s50"].added and pairs["magnitude-s50"].added
    assert pairs["magnitude-s50-w4"].sibling == "wanda-s50-2x4-w4"
    assert added == [RunSpec("wanda-s50-2x4", "wanda", 0.5, "2:4", 16), RunSpec("wanda-s50-2x4-w4", "wanda", 0.5, "2:4", 4)]


def test_only_equal_sparsity_is_paired_and_pairing_can_be_off():
    specs = [spec("wanda", 0.6), spec("wanda", 0.75), spec("wanda", 0.75, "1:4")]
    assert pair_siblings(specs, SiblingSettings()) == ({}, [])  # 60 % and 75 % have no 2:4 (50 %) sibling
    pairs, added = pair_siblings(specs, SiblingSettings(pattern="1:4"))
    assert {r: p.sibling for r, p in pairs.items()} == {"wanda-s75": "wanda-s75-1x4"} and added == []
    assert pair_siblings([spec("besa")], SiblingSettings(enabled=False)) == ({}, [])


def test_configured_pairs_win_and_must_name_a_matching_run():
    specs = [spec("besa"), spec("sparsegpt", pattern="2:4"), spec("wanda", 0.6), spec("wanda", pattern="2:4", wbits=4)]
    pairs, added = pair_siblings(specs, SiblingSettings(pairs={"besa-s50": "sparsegpt-s50-2x4"}))
    assert pairs["besa-s50"].sibling == "sparsegpt-s50-2x4" and pairs["besa-s50"].why == "configured" and added == []
    for bad, msg in (
        (
            {"besa-s50": "nothing"},
            "[siblings].pairs.besa-s50: 'nothing' is not an n:m run of this experiment at besa-s50's sparsity 0.5 and 16 weight bits (those: sparsegpt-s50-2x4)",
        ),
        ({"besa-s50": "wanda-s50-2x4-w4"}, "is not an n:m run"),  # other weight bits
        ({"besa-s50": "wanda-s60"}, "is not an n:m run"),  # not n:m
        ({"nope-s50": "sparsegpt-s50-2x4"}, "[siblings].pairs.nope-s50: not a pruned unstructured run of this experiment"),
        ({"wanda-s60": "sparsegpt-s50-2x4"}, "is not an n:m run of this experiment at wanda-s60's sparsity 0.6"),
    ):
        with pytest.raises(UserError) as exc:
            pair_siblings(specs, SiblingSettings(pairs=bad))
        assert msg in str(exc.value) and "\n" not in str(exc.value)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["magnitude", "wanda", "sparsegpt", "besa"]),
            st.sampled_from([0.5, 0.6]),
            st.sampled_from(["unstructured", "2:4"]),
            st.sampled_from([16, 4]),
        ),
        min_size=1,
        max_size=8,
    ),
    st.sampled_from(["wanda", "magnitude"]),
)
def test_every_pair_is_at_equal_sparsity_and_wbits(grid, fallback):
    specs = list({s.name: s for s in (spec(m, 0.5 if p != "unstructured" else sp, p, w) for m, sp, p, w in grid)}.values())
    pairs, added = pair_siblings(specs, SiblingSettings(fallback=fallback))
    everything = {s.name: s for s in specs + added}
    assert len(everything) == len(specs) + len(added)  # added runs are new names
    for run, p in pairs.items():
        u, s = everything[run], everything[p.sibling]
        assert u.pattern == "unstructured" and s.pattern == "2:4" and s.sparsity == u.sparsity == 0.5 and s.wbits == u.wbits
        assert p.why == ("same-method" if s.method == u.method else "fallback") and (s.method in (u.method, fallback))
        assert p.added == (s in added)
    # every 50 % unstructured run is paired; no other run is
    assert set(pairs) == {s.name for s in specs if s.pattern == "unstructured" and s.sparsity == 0.5}


def _default_dict() -> dict:
    return tomllib.loads(DEFAULT_TOML.read_text())


@pytest.mark.parametrize(
    "table, key",
    [
        ({"pairs": {"besa-s50": "besa-s50-2x4"}}, "x.toml: [siblings].pairs.besa-s50: 'besa-s50-2x4' is not an n:m run"),
        ({"pattern": "4:2"}, 'x.toml: [siblings].pattern: expected "n:m"'),
        ({"fallback": "obs"}, "x.toml: [siblings].fallback: unknown method 'obs'"),
        ({"fallback": "dense"}, "x.toml: [siblings].fallback: unknown method 'dense'"),
        ({"enabeld": False}, "x.toml: [siblings].enabeld: unknown key"),
        ({"pairs": {"besa-s50": 3}}, "x.toml: [siblings].pairs.besa-s50: expected a run name"),
    ],
)
def test_bad_siblings_table_names_the_key(table, key):
    d = _default_dict()
    d["siblings"] = table
    with pytest.raises(UserError) as exc:
        parse_experiment(d, source="x.toml")
    assert str(exc.value).startswith(key) and "\n" not in str(exc.value)


def test_cli_sibling_referring_to_nothing_is_one_line_exit_2(tmp_path):
    exp = tmp_path / "x.toml"
    exp.write_text(DEFAULT_TOML.read_text() + '\n[siblings]\npairs = { besa-s50 = "besa-s50-2x4" }\n')
    r = subprocess.run(
        [sys.executable, "-m", "besa.cli", "run", str(exp), "--out", str(tmp_path / "o"), "--dry-run"], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "[siblings].pairs.besa-s50: 'besa-s50-2x4' is not an n:m run" in r.stderr and not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------------ besa run's plan
def test_siblings_get_the_nm_engine_on_every_cycle_preset():
    d = _default_dict()
    d["simulate"].append({"preset": "hbm-4k", "modes": ["cycle", "dense"], "tokens": [1, 2048]})
    exp = parse_experiment(d, source="x.toml")
    assert sibling_sims(exp) == [("vitcod", "nm", (1, 512)), ("hbm-4k", "nm", (1, 2048))]  # besa-compat is not a machine model
    plan = plan_sims(exp)
    base = [(t.preset, m, tuple(t.tokens)) for t in exp.simulate for m in t.modes]
    assert plan["wanda-s50-2x4"] == base + sibling_sims(exp) and plan["besa-s50"] == base and plan["dense"] == base
    # an experiment that already simulates mode nm on a preset adds nothing there
    d["simulate"][0]["modes"] = ["cycle", "nm"]
    assert sibling_sims(parse_experiment(d, source="x.toml")) == [("hbm-4k", "nm", (1, 2048))]


def test_sibling_files_are_written_and_stale_ones_removed(tmp_path):
    exp = load_experiment(DEFAULT_TOML)
    for s in exp.run_specs():
        (tmp_path / s.name).mkdir()
    (tmp_path / "dense" / "sibling.json").write_text("{}")  # a stale file from another plan
    write_sibling_files(exp, tmp_path)
    rec = json.loads((tmp_path / "besa-s50" / "sibling.json").read_text())
    assert rec == sibling_record(exp, exp.sibling_plan()[0]["besa-s50"])
    assert rec["sibling"] == "wanda-s50-2x4" and rec["why"] == "fallback" and rec["simulations"] == ["../wanda-s50-2x4/sim/vitcod-nm"]
    assert (rec["pattern"], rec["sparsity"], rec["wbits"], rec["engine"]) == ("2:4", 0.5, 16, "nm")
    assert not (tmp_path / "dense" / "sibling.json").exists() and not (tmp_path / "wanda-s50-2x4" / "sibling.json").exists()


def test_dry_run_names_every_pair_and_the_nm_steps(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "besa.cli", "run", str(DEFAULT_TOML), "--out", str(tmp_path / "o"), "--dry-run"], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr
    assert "  sibling: besa-s50 vs wanda-s50-2x4 (wanda 2:4 on the same calibration)" in r.stdout
    assert "  sibling: wanda-s50 vs wanda-s50-2x4 (the same method at 2:4)" in r.stdout
    nm = [l for l in r.stdout.splitlines() if "--mode nm" in l]
    assert len(nm) == 1 and "wanda-s50-2x4/masks.safetensors --hw vitcod --mode nm --tokens 1,512" in nm[0]


# ------------------------------------------------------------------------------------------ the report
@pytest.fixture(scope="module")
def summ():
    return summary_table(build_table(load_runs([FIX])))


def _totals(run: str, sim: str, tokens: int) -> dict:
    return json.loads((FIX / run / "sim" / sim / "summary.json").read_text())["totals"][str(tokens)]


def test_sibling_table_reads_both_simulations(summ):
    sib = sibling_table(summ).set_index(["run", "tokens"])
    for run in ("magnitude-s50", "wanda-s50", "sparsegpt-s50", "besa-s50"):
        for n in (1, 512):
            r = sib.loc[(run, n)]
            u, s = _totals(run, "vitcod-cycle", n), _totals("wanda-s50-2x4", "vitcod-nm", n)
            assert r["cycles"] == u["cycles"] and r["sibling_cycles"] == s["cycles"]
            assert r["speedup"] == pytest.approx(u["dense_cycles"] / u["cycles"]) and r["sibling_speedup"] == pytest.approx(s["dense_cycles"] / s["cycles"])
            assert r["dense_cycles"] == r["sibling_dense_cycles"]  # the same dense machine
            assert r["speed_ratio"] == pytest.approx(s["cycles"] / u["cycles"])
            assert r["faster"] == ("unstructured" if u["cycles"] < s["cycles"] else "2:4")
            assert r["phase"] == {1: "decode", 512: "prefill"}[n] and r["sibling"] == "wanda-s50-2x4"
    assert sib.loc[("magnitude-s50", 1), "lower_ppl"] == "2:4" and sib.loc[("besa-s50", 1), "lower_ppl"] == "unstructured"  # 393 vs 88.5; 31.7 vs 88.5
    w4 = sibling_table(summ).query("run == 'besa-s50-w4'")
    assert len(w4) == 1 and "wanda-s50-2x4-w4 is not among the loaded runs" in w4["note"].iloc[0]


def test_verdict_names_the_winner(summ):
    lines = verdicts(sibling_table(summ))
    assert lines[0].startswith(
        "vitcod decode (N = 1), 4 pair(s): faster is the 2:4 sibling on the n:m engine — unstructured faster in 0, 2:4 faster in 4, tied in 0"
    )
    assert "unstructured has the lower perplexity in 3 of 4" in lines[0] and lines[1].startswith("vitcod prefill (N = 512)")


def test_a_missing_nm_simulation_is_a_note_not_a_crash(tmp_path):
    root = tmp_path / "exp"
    for run in ("besa-s50", "wanda-s50-2x4"):
        shutil.copytree(FIX / run, root / run)
    shutil.rmtree(root / "wanda-s50-2x4" / "sim" / "vitcod-nm")
    sib = sibling_table(summary_table(build_table(load_runs([root]))))
    assert sib["sibling_speedup"].isna().all() and sib["note"].str.contains(r"no n:m-engine simulation \(sim/vitcod-nm\)").all()


def test_summary_reads_summary_json_totals_not_layer_sums(tmp_path):
    """summary.csv is the simulator's totals (simulator/totals.py via summary.json), whatever layers.csv sums to."""
    run = tmp_path / "exp" / "besa-s50"
    shutil.copytree(FIX / "besa-s50", run)
    p = run / "sim" / "vitcod-cycle" / "summary.json"
    doc = json.loads(p.read_text())
    doc["totals"]["1"]["cycles"] = 12345
    p.write_text(json.dumps(doc))
    s = summary_table(build_table(load_runs([run.parent]))).set_index(["mode", "tokens"])
    assert s.loc[("cycle", 1), "cycles"] == 12345 and s.loc[("cycle", 1), "speedup"] == pytest.approx(doc["totals"]["1"]["dense_cycles"] / 12345)
    # without totals (an older summary.json) the same function (simulator.totals) runs on layers.csv
    del doc["totals"]
    p.write_text(json.dumps(doc))
    s = summary_table(build_table(load_runs([run.parent]))).set_index(["mode", "tokens"])
    lay = pd.read_csv(run / "sim" / "vitcod-cycle" / "layers.csv")
    assert s.loc[("cycle", 1), "cycles"] == lay.loc[lay["tokens"] == 1, "cycles"].sum()


def test_siblings_csv_and_page_section(tmp_path):
    paths = write_tables(build_table(load_runs([FIX])), tmp_path)
    sib = pd.read_csv(paths["siblings"])
    assert set(sib["run"]) == {"magnitude-s50", "wanda-s50", "sparsegpt-s50", "besa-s50", "besa-s50-w4"}
    md = (tmp_path / "report.md").read_text()
    assert "## Unstructured vs its n:m sibling (equal sparsity)" in md and "2:4 faster in 4, tied in 0" in md


# ------------------------------------------------------------------------------------------ end to end
E2E = """
[experiment]
name = "e2e"
model = "smollm2-135m"

[calibration]
nsamples = 2
seqlen = 32

[eval]
seqlen = 64
max_windows = 1

[[runs]]
methods = ["dense", "magnitude"]
sparsities = [0.5]

[[simulate]]
preset = "vitcod"
modes = ["cycle"]
tokens = [1, 64]
"""


def _handmade_masks(pattern: str, seed: int) -> dict:
    """Small layers at exactly 50 %: unstructured (any half of each row) or 2:4 (2 kept of every 4)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    keep = {}
    for b in range(2):
        for proj, (m, k) in (("self_attn.q_proj", (64, 64)), ("mlp.down_proj", (64, 128))):
            if pattern == "2:4":
                score = rng.random((m, k // 4, 4))
                mask = np.argsort(np.argsort(score, axis=2), axis=2) >= 2
            else:
                score = rng.random((m, k))
                mask = np.argsort(np.argsort(score, axis=1), axis=1) >= k // 2
            keep[f"model.layers.{b}.{proj}"] = mask.reshape(m, k)
    return keep


@pytest.mark.slow
def test_besa_run_end_to_end_with_handmade_masks(tmp_path):
    """`besa run` whose prune and eval steps are already done (hand-made masks, made-up perplexities, no
    torch model): the magnitude run gets an ADDED Wanda 2:4 sibling, simulated for real on the vitcod
    cycle model and on its n:m engine; sibling.json, experiment.json and the report's siblings.csv say so."""
    pytest.importorskip("torch")  # besa run checks every step's command line with the real parsers
    from besa.experiment.plan import eval_cmd, prune_cmd
    from besa.experiment.runner import _digest, run_experiment
    from besa_common.masks import write_masks

    toml = tmp_path / "e2e.toml"
    toml.write_text(E2E)
    exp = load_experiment(toml)
    out = tmp_path / "out"
    ppl = {"dense": 20.0, "magnitude-s50": 300.0, "wanda-s50-2x4": 90.0}
    assert [s.name for s in exp.run_specs()] == list(ppl)
    for i, s in enumerate(exp.run_specs()):
        d = out / s.name
        d.mkdir(parents=True)
        if s.dense:
            prune = _digest("dense", exp.experiment.model)
            steps = {}
        else:
            write_masks(d / "masks.safetensors", _handmade_masks(s.pattern, i), {"method": s.method, "target": 0.5})
            (d / "manifest.json").write_text(
                json.dumps({"method": s.method, "target": 0.5, "pattern": None if s.pattern == "unstructured" else s.pattern, "updated_weights": False})
            )
            prune = _digest(prune_cmd(exp, s, d), "")
            steps = {"prune": {"done": True, "digest": prune}}
        (d / "eval.json").write_text(json.dumps({"method": s.method, "perplexity": {"wiki": {"ppl": ppl[s.name], "seqlen": 64, "windows": 1}}}))
        steps["eval"] = {"done": True, "digest": _digest(eval_cmd(exp, s, d), prune)}
        (d / "status.json").write_text(json.dumps({"steps": steps}))
    assert run_experiment(exp, out) == 0
    sib = out / "wanda-s50-2x4"
    assert json.loads((sib / "status.json").read_text())["steps"]["sim/vitcod-nm"]["done"]
    assert not (out / "magnitude-s50" / "sim" / "vitcod-nm").exists() and not (out / "dense" / "sim" / "vitcod-nm").exists()
    rec = json.loads((out / "magnitude-s50" / "sibling.json").read_text())
    assert (rec["sibling"], rec["why"], rec["added"]) == ("wanda-s50-2x4", "fallback", True)
    assert json.loads((out / "experiment.json").read_text())["siblings"] == {"magnitude-s50": "wanda-s50-2x4"}
    nm = json.loads((sib / "sim" / "vitcod-nm" / "summary.json").read_text())["totals"]
    cyc = json.loads((sib / "sim" / "vitcod-cycle" / "summary.json").read_text())["totals"]
    mag = json.loads((out / "magnitude-s50" / "sim" / "vitcod-cycle" / "summary.json").read_text())["totals"]
    table = pd.read_csv(out / "siblings.csv").set_index("tokens")
    for n in ("1", "64"):
        # the n:m engine in mode nm is the engine the cycle model reports for a 2:4 mask; one dense baseline for all
        assert nm[n]["cycles"] == cyc[n]["nm_cycles"] and nm[n]["dense_cycles"] == cyc[n]["dense_cycles"] == mag[n]["dense_cycles"]
        assert "nm_cycles" not in mag[n]  # an unstructured mask claims no n:m result
        r = table.loc[int(n)]
        assert (r["run"], r["sibling"], r["preset"]) == ("magnitude-s50", "wanda-s50-2x4", "vitcod")
        assert r["cycles"] == mag[n]["cycles"] and r["sibling_cycles"] == nm[n]["cycles"]
        assert r["faster"] == ("unstructured" if mag[n]["cycles"] < nm[n]["cycles"] else "2:4" if mag[n]["cycles"] > nm[n]["cycles"] else "tie")
        assert (r["ppl"], r["sibling_ppl"], r["lower_ppl"]) == (300.0, 90.0, "2:4")
    page = (out / "report.html").read_text()
    assert "Unstructured vs its n:m sibling" in page and "magnitude-s50" in page and (out / "figures" / "siblings.svg").is_file()
