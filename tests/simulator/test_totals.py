"""simulator.totals: the one model-totals implementation behind summary.json and every sweep row."""

import math

import pandas as pd
import pytest

from simulator.totals import model_totals


def _layers():
    # two token counts x two layers, numbers chosen by hand
    return pd.DataFrame(
        {
            "tokens": [1, 1, 8, 8],
            "cycles": [100, 300, 400, 600],
            "dense_cycles": [200, 400, 800, 800],
            "nm_cycles": [150, None, 500, 700],  # the n:m engine could not run layer 2 at N=1
            "utilization": [0.5, 0.1, 0.25, 0.5],
            "bound": ["memory", "memory", "compute", "memory"],
            "energy_pj": [1e6, 3e6, 2e6, 2e6],
            "dense_energy_pj": [2e6, 4e6, 4e6, 4e6],
        }
    )


def test_totals_by_hand():
    t1, t8, every = model_totals(_layers(), [1, 8, None])
    assert t1["layers"] == 2 and t1["cycles"] == 400 and t1["dense_cycles"] == 600
    assert t1["speedup_vs_dense"] == pytest.approx(1.5)
    assert "nm_cycles" not in t1 and "speedup_vs_nm" not in t1  # a sum over some layers is no model total
    assert t1["memory_bound_share"] == 1.0 and t1["bound"] == "memory"
    assert t1["utilization"] == pytest.approx((0.5 * 100 + 0.1 * 300) / 400)
    assert t1["energy_uj"] == pytest.approx(4.0) and t1["energy_vs_dense"] == pytest.approx(1.5)
    assert t8["nm_cycles"] == 1200 and t8["speedup_vs_nm"] == pytest.approx(1.2)
    assert t8["memory_bound_share"] == 0.5 and t8["bound"] == "compute"  # memory only above one half
    assert every["layers"] == 4 and every["cycles"] == 1400


def test_zero_cycles_give_nan_ratios_and_missing_columns_are_left_out():
    t = model_totals(pd.DataFrame({"tokens": [1], "cycles": [0], "dense_cycles": [0]}), [1])[0]
    assert t["cycles"] == 0 and math.isnan(t["speedup_vs_dense"])
    assert set(t) == {"layers", "cycles", "dense_cycles", "speedup_vs_dense"}
    assert model_totals(_layers(), [3]) == [{"layers": 0}]


def test_summary_json_and_sweep_rows_agree():
    """The same simulated layers give the same totals in summary.json and in a sweep row."""
    from simulator import hardware, run, workload
    from simulator.sweep.worker import totals_by_tokens

    hw = hardware.load_hardware("vitcod")
    layers = run.simulate(workload.synthetic("64x128*3:skewed=0.5", 0), hw, "cycle", [1, 16])
    summary = run.summarize(layers, hw)
    for n, row in zip((1, 16), totals_by_tokens(layers, [1, 16])):
        tot = summary["totals"][str(n)]
        assert row["cycles"] == tot["cycles"] and row["dense_cycles"] == tot["dense_cycles"]
        assert row["speedup"] == pytest.approx(tot["speedup_vs_dense"])
        assert row["memory_bound_share"] == tot["memory_bound_share"]
        assert row["utilization"] == pytest.approx(tot["utilization"])
        assert "bound" not in row  # only the results table's columns
