"""``besa simulate --sensitivity``: guessed preset fields at the ends of their plausible range; the
guess that decides the headline is named.  ``banks = 0`` derives the banks from the MACs of a line."""

from __future__ import annotations

import pytest

from besa_common.errors import UserError
from simulator.hardware import BANKS_PER_MAC, list_presets, load_hardware
from simulator.sensitivity import deciding, guesses, sensitivity
from simulator.workload import synthetic
from tests.simulator.test_cli import run_cli


def test_vitcod_at_16_macs_per_line_names_banks(tmp_path, capsys):
    code, out, err = run_cli(
        ["--synthetic", "llama-7b[1]:sparsity=0.5", "--set", "macs_per_line=16", "--tokens", "1,2048", "--out", str(tmp_path / "o"), "--sensitivity"], capsys
    )
    assert code == 0, err
    last = out.strip().splitlines()[-2]
    assert last.startswith("guesses that move speedup or energy by more than 5%:") and "banks" in last.split(":", 1)[1]
    assert any(line.strip().startswith("banks [32 .. 128]") and line.endswith("<- decides") for line in out.splitlines())
    import json

    rec = json.loads((tmp_path / "o" / "summary.json").read_text())["sensitivity"]  # recorded with the results
    assert rec["deciding"][0] == "banks" and rec["threshold"] == 0.05
    low = next(v for v in rec["variations"] if v["field"] == "banks" and v["end"] == "low" and v["tokens"] == 2048)
    assert low["value"] == 32 and low["d_speedup"] < -0.05


def test_sensitivity_numbers_are_the_machines_at_the_range_ends():
    layers = synthetic("4096x4096:sparsity=0.5", 0)
    base, vs = sensitivity(layers, "vitcod", {"macs_per_line": 16}, "cycle", [2048])
    low = next(v for v in vs if v.field == "banks" and v.end == "low")
    assert low.value == 32  # derived 4 x 16 = 64, times 0.5
    from simulator.run import simulate
    from simulator.totals import model_totals

    df = simulate(layers, load_hardware("vitcod", {"macs_per_line": 16, "banks": 32}), "cycle", [2048])
    assert low.speedup == model_totals(df, [2048])[0]["speedup_vs_dense"]
    assert "banks" in deciding(vs) and low.d_speedup < -0.05
    # a threshold above every move names nothing
    assert deciding(vs, threshold=10.0) == []


def test_guesses_inherit_and_are_checked(tmp_path):
    g = guesses("vitcod-fp16")
    assert set(guesses("vitcod")) <= set(g)
    assert g["e_mac_pj"] == (0.5, 2.0) and g["banks"] == (0.5, 2.0)
    for name in list_presets():
        guesses(name)  # every shipped [guesses] table is well-formed
    for bad, msg in (("banks = [2.0, 4.0]", "0 < low <= 1 <= high"), ("bankz = [0.5, 2]", "unknown hardware field"), ("banks = 3", "expected [low, high]")):
        (tmp_path / "p.toml").write_text(f'base = "vitcod"\n[guesses]\n{bad}\n')
        with pytest.raises(UserError, match=msg.replace("[", r"\[")):
            guesses(str(tmp_path / "p.toml"))
        if "bankz" in bad:  # an unknown field in the table (or a field written below it) stops the machine too
            with pytest.raises(UserError, match="fields go above the"):
                load_hardware(str(tmp_path / "p.toml"))
        else:
            load_hardware(str(tmp_path / "p.toml"))  # the machine itself does not use the ranges


def test_banks_derived_from_macs_per_line():
    assert BANKS_PER_MAC == 4
    for name in ("vitcod", "besa-paper-array", "hbm-4k"):  # the ratio of the values they carried before
        hw = load_hardware(name)
        assert hw.banks == BANKS_PER_MAC * hw.macs_per_line
    assert load_hardware("vitcod").banks == 32 and load_hardware("hbm-4k").banks == 256
    assert load_hardware("vitcod", {"macs_per_line": 16}).banks == 64
    assert load_hardware("vitcod", {"macs_per_line": 16, "banks": 32}).banks == 32  # an explicit value stays
    assert load_hardware("gpu-h100").banks == 32  # a datasheet value is not derived
