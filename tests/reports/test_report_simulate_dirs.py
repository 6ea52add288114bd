"""``besa report DIR`` on plain ``besa simulate --out DIR`` folders: each is a run of its own, and two
machines under one preset name are kept apart (labelled by what differs), never merged."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd


def _besa(*args, **kw):
    return subprocess.run([sys.executable, "-m", "besa.cli", *args], capture_output=True, text=True, **kw)


def test_report_on_simulate_outputs_keeps_machines_apart(tmp_path):
    spec = "smollm2-135m[1]:sparsity=0.5"
    for fmt in ("bitmap", "csr"):
        r = _besa("simulate", "--synthetic", spec, "--set", f"index_format={fmt}", "--tokens", "1,64", "--out", str(tmp_path / "sims" / fmt))
        assert r.returncode == 0, r.stderr
    # one folder given directly
    r = _besa("report", str(tmp_path / "sims" / "csr"), "--out", str(tmp_path / "one"))
    assert r.returncode == 0, r.stderr
    one = pd.read_csv(tmp_path / "one" / "summary.csv")
    assert list(one["run"].unique()) == ["csr"] and set(one["tokens"]) == {1, 64} and (one["method"] == "synthetic").all()
    # the folder holding both: two runs, two machines, one summary row per (machine, N): nothing merged
    r = _besa("report", str(tmp_path / "sims"), "--out", str(tmp_path / "both"))
    assert r.returncode == 0, r.stderr
    both = pd.read_csv(tmp_path / "both" / "summary.csv")
    assert len(both) == 4 and set(both["preset"]) == {"vitcod (index_format=bitmap)", "vitcod (index_format=csr)"}
    table = pd.read_csv(tmp_path / "both" / "table.csv")
    assert table.groupby(["run", "tokens"]).size().eq(7).all()  # 7 linears per run and N, none doubled
    assert table["machine_id"].nunique() == 2
    csr = both[(both["run"] == "csr") & (both["tokens"] == 1)].iloc[0]
    assert csr["cycles"] == one[one["tokens"] == 1].iloc[0]["cycles"]
