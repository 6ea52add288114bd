"""``--mode systolic`` (simulator/cost/systolic.py through the mode registry, the shared mask statistics,
``--set`` and ``besa sweep``) against the real SCALE-Sim v3's goldens, exactly.

Each CALC golden row (SCALE-Sim GEMM M = tokens, N = output features, K = input features) becomes a mask
``[N, K]`` with SCALE-Sim's fixed n:m pattern (the first n of every m input features kept; all kept for
dense): the mode must see that mask's smallest covering n:m and give SCALE-Sim's "Total Cycles" and SRAM
counts, and its dense baseline the dense golden of the same shape.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from besa.cli import main
from besa_common.errors import UserError
from besa_common.masks import pack_keep
from simulator import engine as eng
from simulator.hardware import load_hardware
from simulator.stats import MaskStats
from simulator.sweep.spec import check_grid

GOLDEN = Path(__file__).parent / "golden" / "scalesim"
with open(GOLDEN / "calc.csv") as f:
    CALC = list(csv.DictReader(f))
DENSE = {(r["array_rows"], r["array_cols"], r["dataflow"], r["M"], r["N"], r["K"]): int(r["total_cycles"]) for r in CALC if r["sparsity"] == "dense"}


def _keep(N: int, K: int, sparsity: str) -> np.ndarray:
    if sparsity == "dense":
        return np.ones((N, K), bool)
    n, m = (int(x) for x in sparsity.split(":"))
    return np.broadcast_to((np.arange(K) % m) < n, (N, K)).copy()


def _hw(r):
    return load_hardware("systolic-64x64", {"array_rows": r["array_rows"], "array_cols": r["array_cols"], "dataflow": r["dataflow"]})


# the LLaMA-7B rows (4096 x 4096) once, every smaller row in both engines
@pytest.mark.parametrize("r", CALC, ids=[f"{r['group']}/{r['case']}" for r in CALC])
def test_mode_matches_scalesim_exactly(r):
    M, N, K = int(r["M"]), int(r["N"]), int(r["K"])
    keep = _keep(N, K, r["sparsity"])
    st = MaskStats(N, K, packed=pack_keep(keep))
    engines = ["cpp" if eng.default_engine() == "cpp" else "python"] + (["reference"] if N * K <= 1 << 14 else [])
    for engine in engines:
        (got,) = eng.evaluate_stats(st, "systolic", [M], _hw(r), engine)
        assert got["cycles"] == int(r["total_cycles"]), engine
        assert got["sram_ifmap_reads"] == float(r["sram_ifmap_reads"])
        assert got["sram_filter_reads"] == int(r["sram_filter_reads"])
        assert got["sram_ofmap_writes"] == int(r["sram_ofmap_writes"])
        assert got["nm_n"] == (4 if r["sparsity"] == "dense" else int(r["sparsity"][0]))
        key = (r["array_rows"], r["array_cols"], r["dataflow"], r["M"], r["N"], r["K"])
        if key in DENSE:
            assert got["dense_cycles"] == DENSE[key]
        assert got["nnz"] == int(keep.sum())


def test_goldens_reach_every_case_the_issue_names():
    sp = {r["sparsity"] for r in CALC}
    assert sp == {"dense", "2:4", "1:4"} and {r["dataflow"] for r in CALC} == {"ws", "os", "is"}
    assert any(r["array_rows"] != r["array_cols"] for r in CALC)
    assert any(r["N"] == "1" for r in CALC) and any(int(r["N"]) > int(r["array_cols"]) for r in CALC)
    assert any(int(r["K"]) % int(r["array_rows"]) for r in CALC)


def test_unstructured_mask_runs_at_its_smallest_covering_nm():
    hw = load_hardware("systolic-64x64")
    rng = np.random.default_rng(0)
    keep = rng.random((64, 256)) < 0.3
    gm = max(int(keep[i, g : g + 4].sum()) for i in range(64) for g in range(0, 256, 4))
    (r,) = eng.evaluate_stats(MaskStats(64, 256, packed=pack_keep(keep)), "systolic", [8], hw, "python")
    assert r["nm_n"] == gm  # 30 % random: some group of 4 has 3 kept -> 3:4
    # a mask with a fully kept group of 4 runs dense: the same cycles as its dense baseline
    keep[5, 8:12] = True
    (d,) = eng.evaluate_stats(MaskStats(64, 256, packed=pack_keep(keep)), "systolic", [8], hw, "python")
    assert d["nm_n"] == 4 and d["cycles"] == d["dense_cycles"] and d["energy"]["total"] == d["dense_energy"]
    # an all-pruned mask still streams one weight per block of 4
    (z,) = eng.evaluate_stats(MaskStats(64, 256, packed=pack_keep(np.zeros((64, 256), bool))), "systolic", [8], hw, "python")
    assert z["nm_n"] == 1


def test_energy_from_the_preset_table():
    """Energy by class from the preset's e_* fields: sparser -> fewer MACs, SRAM reads and DRAM bytes;
    doubling e_mac_pj adds exactly the MAC energy again."""
    keep = _keep(256, 512, "2:4")
    st = MaskStats(256, 512, packed=pack_keep(keep))
    hw = load_hardware("systolic-64x64")
    (r,) = eng.evaluate_stats(st, "systolic", [16], hw, "python")
    e = r["energy"]
    assert e["mac"] == 16 * 256 * 256 * hw.energy_fj("e_mac_pj") and e["total"] == sum(e[k] for k in ("dram", "sram", "mac", "index", "static"))
    assert e["total"] < r["dense_energy"] and e["dram"] > 0
    (r2,) = eng.evaluate_stats(st, "systolic", [16], load_hardware("systolic-64x64", {"e_mac_pj": 2 * hw.e_mac_pj}), "python")
    assert r2["energy"]["total"] - e["total"] == e["mac"]
    (r3,) = eng.evaluate_stats(st, "systolic", [16], load_hardware("systolic-64x64", {"memory": False}), "python")
    assert r3["energy"]["dram"] == 0


def test_fields_are_settable_and_checked():
    hw = load_hardware("systolic-64x64", {"array_rows": "32", "array_cols": "16", "dataflow": "is"})
    assert hw.systolic_shape == (32, 16) and hw.dataflow == "is"
    assert load_hardware("hbm-4k").systolic_shape == (64, 64)  # 0 = lines x macs_per_line
    with pytest.raises(UserError, match="dataflow must be one of ws, os, is"):
        load_hardware("systolic-64x64", {"dataflow": "rs"})
    with pytest.raises(UserError, match="array_rows"):
        load_hardware("systolic-64x64", {"array_rows": -1})


def test_sweep_can_vary_the_systolic_fields():
    grid = check_grid("systolic-64x64", {"dataflow": ["ws", "os", "is"], "array_rows": [16, 64], "array_cols": [8, 128]}, "grid")
    assert dict(grid) == {"dataflow": ("ws", "os", "is"), "array_rows": (16, 64), "array_cols": (8, 128)}
    with pytest.raises(UserError, match="dataflow"):
        check_grid("systolic-64x64", {"dataflow": ["ws", "xx"]}, "grid")


def test_cli_says_how_masks_ran(tmp_path, capsys):
    out = tmp_path / "o"
    code = main(
        [
            "simulate",
            "--synthetic",
            "64x256*2:nm=1:4",
            "--hw",
            "systolic-64x64",
            "--mode",
            "systolic",
            "--set",
            "dataflow=os",
            "--tokens",
            "1,8",
            "--out",
            str(out),
        ]
    )
    text = capsys.readouterr().out
    assert code == 0 and "systolic 64x64 os: layers run 2 as 1:4" in text and "ridge point" not in text
    s = json.loads((out / "summary.json").read_text())
    assert s["systolic"] == {"array_rows": 64, "array_cols": 64, "dataflow": "os", "nm_m": 4, "layers_run_as": {"1:4": 2}}
    code = main(
        ["simulate", "--synthetic", "64x256:sparsity=0.5", "--hw", "systolic-64x64", "--mode", "systolic", "--tokens", "1", "--out", str(tmp_path / "u")]
    )
    assert code == 0 and "layers run 1 as dense" in capsys.readouterr().out


def test_a_sweep_over_dataflow_and_array_rows_runs_the_closed_form(tmp_path):
    from simulator.cost.systolic import systolic_layer
    from simulator.sweep import load_sweep, run_sweep

    p = tmp_path / "s.toml"
    p.write_text(
        '[sweep]\npreset = "systolic-64x64"\nmode = "systolic"\ntokens = [1, 64]\nseed = 0\n\n'
        '[grid]\ndataflow = ["ws", "os", "is"]\narray_rows = [16, 64]\n\n'
        '[[workload]]\nname = "tiny"\nsynthetic = "256x512*2:nm=2:4"\n'
    )
    res = run_sweep(load_sweep(p), tmp_path / "out", workers=0, processes=False, progress=False)
    df = res.results
    assert len(df) == 12 and (df["status"] == "ok").all()
    for _, r in df.iterrows():
        one = systolic_layer(int(r["array_rows"]), 64, r["dataflow"], int(r["tokens"]), 256, 512, (2, 4)).cycles
        assert r["cycles"] == 2 * one  # two identical 256 x 512 layers
