"""Sweeps can do what ``besa simulate`` does: several modes, context and batch as axes, rows that carry
the machine (clock, MACs, bandwidth) and per-token figures; the report draws modes and contexts apart."""

from __future__ import annotations

import tomllib

import pytest

import reports.figures as F
from besa_common.errors import UserError
from simulator import job
from simulator.decoder import model_for
from simulator.engine import MEMORY_MODES
from simulator.hardware import load_hardware
from simulator.sweep import load_sweep, parse_sweep, run_sweep
from simulator.workload import synthetic

SWEEP = """
[sweep]
preset = "vitcod"
mode = ["dense", "nm", "cycle"]
tokens = [2, 16]
context = [0, 128]
batch = [1, 2]

[grid]
lines = [16, 32]
dram_bytes_per_cycle = [32.0, 128.0]

[[workload]]
name = "smol1"
synthetic = "smollm2-135m[1]:sparsity=0.5"
"""


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    d = tmp_path_factory.mktemp("modes")
    (d / "s.toml").write_text(SWEEP)
    return run_sweep(load_sweep(d / "s.toml"), d / "out", workers=0, progress=False, export=False)


def test_three_modes_context_and_batch_are_axes(swept):
    df = swept.results
    assert (swept.total, swept.failed) == (3 * 2 * 2 * 2 * 4, 0)
    assert set(df["mode"]) == {"dense", "nm", "cycle"} and set(df["context"]) == {0, 128} and set(df["batch"]) == {1, 2}
    assert (df.loc[df["mode"] == "dense", "speedup"] == 1.0).all()
    for r in df.itertuples():  # the machine and per-token figures are in every row: no join needed
        assert r.clock_mhz == 500.0 and r.macs_per_cycle == r.lines * 8
        assert r.bandwidth_bytes_per_s == pytest.approx(r.dram_bytes_per_cycle * 500e6)
        assert r.us_per_token == pytest.approx(r.cycles / 500.0 / r.tokens)
        assert r.energy_uj_per_token == pytest.approx(r.energy_uj / r.tokens)
        assert r.e2e_cycles > r.cycles and r.e2e_us_per_token == pytest.approx(r.e2e_cycles / 500.0 / r.tokens)
    # a longer context costs more attention; the linears do not see it
    g = df.set_index(["mode", "lines", "dram_bytes_per_cycle", "tokens", "batch", "context"]).sort_index()
    key = ("cycle", 32, 128.0, 16, 2)
    assert g.loc[(*key, 128), "attention_cycles"] > g.loc[(*key, 0), "attention_cycles"]
    assert g.loc[(*key, 128), "cycles"] == g.loc[(*key, 0), "cycles"]


def test_a_point_equals_besa_simulate_with_context(swept, tmp_path):
    """The same point through ``besa simulate``'s code (simulator.job): the same totals."""
    df = swept.results
    row = df[
        (df["mode"] == "cycle")
        & (df["lines"] == 16)
        & (df["dram_bytes_per_cycle"] == 32.0)
        & (df["tokens"] == 16)
        & (df["context"] == 128)
        & (df["batch"] == 2)
    ]
    assert len(row) == 1
    row = row.iloc[0]
    layers = synthetic("smollm2-135m[1]:sparsity=0.5", 0)
    hw = load_hardware("vitcod", {"lines": 16, "dram_bytes_per_cycle": 32.0})
    step = job.DecoderStep(model_for(layers, None, "smollm2-135m[1]:sparsity=0.5"), 128, 2)
    summary, *_ = job.simulate_to_dir(layers, hw, "cycle", [16], tmp_path / "sim", decoder=step)
    t = summary["totals"]["16"]
    assert (row["cycles"], row["e2e_cycles"], row["attention_cycles"]) == (t["cycles"], t["e2e_cycles"], t["attention_cycles"])
    assert row["e2e_speedup"] == pytest.approx(t["e2e_speedup_vs_dense"]) and row["e2e_energy_uj"] == pytest.approx(t["e2e_energy_uj"])


def test_report_draws_modes_and_contexts_apart(swept):
    df = swept.results.assign(sweep="s")
    fd = F.sweep_heatmaps(df, max_facets=100)
    assert fd.meta["facets"] == ["mode", "context", "batch"] and fd.meta["scope"] == "whole decoder step"
    facets = {p["facet"] for p in fd.panels.values()}
    assert len(facets) == 3 * 2 * 2
    assert "mode=nm, context=0 (a fresh prompt), batch=2" in facets
    assert not any("nan" in f for f in facets)
    # each panel holds its own points, never another mode's
    p = fd.panels["N=16|mode=dense, context=128, batch=1|speedup"]
    assert (p["grid"] == 1.0).all()


def test_missing_value_facet_is_named_not_nan():
    import pandas as pd

    rows = []
    for fmt in ("bitmap", "csr", None):  # an n:m run beside a cycle sweep over index_format
        for lines in (16, 32):
            for bw in (1.0, 2.0):
                rows.append(
                    {
                        "status": "ok",
                        "mode": "nm" if fmt is None else "cycle",
                        "tokens": 1,
                        "lines": lines,
                        "dram_bytes_per_cycle": bw,
                        "index_format": fmt,
                        "cycles": 10.0,
                        "speedup": 1.5,
                        "preset": "vitcod",
                    }
                )
    fd = F.sweep_heatmaps(pd.DataFrame(rows))
    facets = {p["facet"] for p in fd.panels.values()}
    assert "index_format=not set, mode=nm" in facets and not any("nan" in f for f in facets)


@pytest.mark.parametrize(
    "mutate, msg",
    [
        (lambda d: d["grid"].update(context=[1, 2]), "[grid].context: not a hardware field; give context = [...] in [sweep]"),
        (lambda d: d["sweep"].update(mode=["cycle", "besa-compat"]), "context: needs modes with a memory model"),
        (lambda d: d["sweep"].update(mode=["cycle", "warp"]), "[sweep].mode: unknown mode 'warp'"),
        (lambda d: d["sweep"].update(mode=["cycle", "cycle"]), "[sweep].mode: duplicate value 'cycle'"),
        (lambda d: d["sweep"].update(batch=[3]), "is not a multiple of batch 3"),
        (lambda d: d["sweep"].update(context=[-1]), "context must be >= 0"),
        (lambda d: (d["sweep"].pop("context"), d["sweep"].update(batch=[2])), "[sweep].batch: batch is the decoder step's; give context"),
        (lambda d: d["workload"][0].update(synthetic="64x64*2:sparsity=0.5"), "is not a model; give"),
    ],
)
def test_bad_settings_are_one_line(mutate, msg):
    d = tomllib.loads(SWEEP)
    mutate(d)
    with pytest.raises(UserError) as e:
        parse_sweep(d, source="s.toml")
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_modes_come_from_the_registry():
    """Every memory mode of the registry is accepted in a sweep with context (a mode added there appears here)."""
    d = tomllib.loads(SWEEP)
    d["sweep"]["mode"] = list(MEMORY_MODES)
    assert parse_sweep(d).settings.modes == tuple(MEMORY_MODES)
