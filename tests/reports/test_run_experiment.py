"""``besa run``: step isolation, resume after a kill, the report at the end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]

TINY = """
[experiment]
name = "tiny"
model = "{model}"
seed = 0

[calibration]
dataset = "wiki"
nsamples = 2
seqlen = 32

[eval]
dataset = "wiki"
seqlen = 64
max_windows = 1

[[runs]]
methods = {methods}
sparsities = [0.5]

[[simulate]]
preset = "vitcod"
modes = ["cycle"]
tokens = [1, 64]
"""


def _besa(*args, **kw):
    return subprocess.run([sys.executable, "-m", "besa.cli", *args], capture_output=True, text=True, **kw)


def test_failed_steps_are_recorded_and_reported(tmp_path):
    """A model that does not exist: every prune / eval step fails, the run goes on, the report says so."""
    exp = tmp_path / "bad-model.toml"
    exp.write_text(TINY.format(model=str(tmp_path / "no-such-model"), methods='["dense", "magnitude", "wanda"]'))
    out = tmp_path / "out"
    r = _besa("run", str(exp), "--out", str(out), timeout=600)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAILED" in r.stdout and "step(s) failed" in r.stdout
    st = json.loads((out / "wanda-s50" / "status.json").read_text())
    assert st["steps"]["prune"]["done"] is False and st["steps"]["prune"]["error"]
    assert (out / "wanda-s50" / "logs" / "prune.log").is_file()
    page = (out / "report.html").read_text()
    assert "step prune failed" in page and "Missing pieces" in page
    assert f"report: {(out / 'report.html').resolve()}" in r.stdout and "total wall time" in r.stdout


@pytest.mark.slow
def test_run_kill_midway_then_resume(tmp_path):
    """Kill ``besa run`` after its first finished step; the rerun skips it and finishes the rest."""
    exp = tmp_path / "tiny.toml"
    exp.write_text(TINY.format(model="smollm2-135m", methods='["dense", "magnitude"]'))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "besa.cli", "run", str(exp), "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    marker = out / "magnitude-s50" / "status.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if marker.is_file() and json.loads(marker.read_text())["steps"].get("prune", {}).get("done"):
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.stdout.read()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    masks_mtime = (out / "magnitude-s50" / "masks.safetensors").stat().st_mtime_ns
    assert not (out / "report.html").exists()

    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "magnitude-s50: prune - already done, skipped" in r.stdout
    assert (out / "magnitude-s50" / "masks.safetensors").stat().st_mtime_ns == masks_mtime  # not redone
    for run in ("dense", "magnitude-s50"):
        d = out / run
        assert (d / "eval.json").is_file() and (d / "sim" / "vitcod-cycle" / "layers.csv").is_file()
    page = (out / "report.html").read_text()
    assert 'id="img-layer_speedup-vitcod"' in page and 'id="img-ppl_vs_speedup"' in page and 'id="img-roofline-vitcod"' in page
    assert "Uniform allocation" in page and "magnitude-s50" in page  # a uniform run is a one-line note, not a blank panel
    assert (out / "figures" / "ppl_vs_speedup.svg").is_file()
    assert not [p for p in out.rglob("*.tmp")]
    # a third run has nothing left to do
    # the added 2:4 sibling of magnitude-s50 (Wanda 2:4), simulated on the n:m engine, side by side in the report
    sib = pd.read_csv(out / "siblings.csv")
    assert set(sib["run"]) == {"magnitude-s50"} and (sib["sibling"] == "wanda-s50-2x4").all() and sib["sibling_speedup"].notna().all()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    # dense: eval + sim; magnitude-s50: prune + eval + sim; wanda-s50-2x4: prune + eval + sim + the n:m engine
    assert r.returncode == 0 and r.stdout.count("already done, skipped") == 2 + 3 + 4


def test_dry_run_lists_every_step_with_real_weight_width(tmp_path):
    exp = tmp_path / "q.toml"
    exp.write_text(TINY.format(model="smollm2-135m", methods='["dense", "besa"]') + "\n[options.besa]\nd_coef = 5\nsmoothing = false\n")
    text = exp.read_text().replace("sparsities = [0.5]", "sparsities = [0.5]\nwbits = [16, 4]")
    exp.write_text(text)
    r = _besa("run", str(exp), "--out", str(tmp_path / "o"), "--dry-run")
    assert r.returncode == 0, r.stderr
    lines = [l.strip() for l in r.stdout.splitlines() if l.startswith("  besa ")]
    # dense: eval + 1 sim; besa-s50 and besa-s50-w4: prune + eval + 1 sim each; their added 2:4 siblings
    # wanda-s50-2x4 and wanda-s50-2x4-w4: prune + eval + 1 sim + the n:m engine each
    assert len(lines) == 2 + 3 + 3 + 4 + 4
    w4 = [l for l in lines if "besa-s50-w4" in l]
    assert any(l.startswith("besa prune") and "--wbits 4" in l and "--d-coef 5" in l and "--no-smoothing" in l for l in w4)
    assert any(l.startswith("besa simulate") and "--set weight_bits=4" in l for l in w4)
    assert not any("weight_bits" in l for l in lines if "-w4/" not in l)
    sib_w4 = [l for l in lines if "wanda-s50-2x4-w4" in l]
    assert any(l.startswith("besa prune") and "--pattern 2:4" in l and "--wbits 4" in l for l in sib_w4)
    assert any("--mode nm" in l and "--set weight_bits=4" in l for l in sib_w4)
    assert "sibling: besa-s50-w4 vs wanda-s50-2x4-w4 (wanda 2:4 on the same calibration, added to the plan)" in r.stdout
    assert not (tmp_path / "o").exists()  # a dry run writes nothing


def test_prune_outputs_require_weights_of_weight_changing_runs(tmp_path):
    """A SparseGPT run dir pruned before weights.safetensors existed is re-pruned (and so re-evaluated)."""
    from besa.experiment.plan import prune_outputs

    base = [tmp_path / "masks.safetensors", tmp_path / "manifest.json"]
    assert prune_outputs(tmp_path) == base  # nothing yet
    for manifest, needs in (
        ({"method": "wanda", "updated_weights": False}, False),
        ({"method": "sparsegpt", "updated_weights": True}, True),
        ({"method": "sparsegpt"}, True),
        ({"method": "wanda"}, False),
    ):
        (tmp_path / "manifest.json").write_text(json.dumps(manifest))
        assert prune_outputs(tmp_path) == base + ([tmp_path / "weights.safetensors"] if needs else []), manifest


@pytest.mark.parametrize(
    "extra, key",
    [
        ("\n[options.besa]\nd_coeff = 5\n", "[options.besa].d_coeff: `besa prune` rejects it: unrecognized arguments: --d-coeff 5"),
        ('\n[options.besa]\nd_coef = "many"\n', "[options.besa].d_coef: `besa prune` rejects it: argument --d-coef: invalid float value"),
        ('\n[whatif]\nrun = "besa-s50"\nworkers = -1\ngrid = {lines = [16, 32]}\n', "[whatif].workers must be an integer >= 0"),
        ('\n[whatif]\nrun = "besa-s50"\ngrid = {lines = [16, 32], tau = ["x"]}\n', "[whatif].grid.tau[0]: expected a number"),
    ],
)
def test_dry_run_rejects_what_the_real_run_would(tmp_path, extra, key):
    """`besa run --dry-run` and `besa run` go through the same checks: one line, exit 2, nothing written."""
    exp = tmp_path / "x.toml"
    exp.write_text(TINY.format(model="smollm2-135m", methods='["dense", "besa"]') + extra)
    for dry in (["--dry-run"], []):
        r = _besa("run", str(exp), "--out", str(tmp_path / "o"), *dry, timeout=300)
        assert r.returncode == 2, r.stdout + r.stderr
        assert key in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not (tmp_path / "o").exists()


def test_dry_run_rejects_unknown_calibration_dataset(tmp_path):
    exp = tmp_path / "x.toml"
    exp.write_text(TINY.format(model="smollm2-135m", methods='["magnitude"]').replace('dataset = "wiki"\nnsamples', 'dataset = "wikki"\nnsamples'))
    r = _besa("run", str(exp), "--out", str(tmp_path / "o"), "--dry-run", timeout=300)
    assert r.returncode == 2 and "[calibration].dataset: `besa prune` rejects it" in r.stderr and "'wikki'" in r.stderr
