"""`besa simulate` writes layers.csv + summary.json as ONE unit: real SIGKILLs of a child process.

A reader must always find a pair from the same run (the token counts of layers.csv equal
summary.json's ``tokens``), never a new layers.csv beside an old summary.json, one without the
other, or a 0-byte file.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
# The child stops after writing the FIRST file of the unit (the window the old code lost data in).
STOP_MIDWAY = """
import sys, time
import besa_common.fileio as f
real = f._write_member
def slow(path, data):
    real(path, data)
    print("midway", path.name, flush=True)
    time.sleep(60)
f._write_member = slow
from besa.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT))


def _simulate(out: Path, tokens: str, spec: str = "64x64*3:sparsity=0.5") -> None:
    subprocess.run(
        [sys.executable, "-m", "besa", "simulate", "--synthetic", spec, "--tokens", tokens, "--out", str(out)], check=True, capture_output=True, env=_env()
    )


def _consistent(out: Path) -> list[int]:
    """The token counts of the pair in ``out`` (asserting both files exist and agree)."""
    summary = json.loads((out / "summary.json").read_text())
    csv = pd.read_csv(out / "layers.csv")
    assert sorted(csv["tokens"].unique().tolist()) == summary["tokens"]
    return summary["tokens"]


def test_kill_between_the_two_writes_keeps_the_old_pair(tmp_path):
    out = tmp_path / "sim"
    _simulate(out, "1")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = subprocess.Popen(
        [sys.executable, "-c", STOP_MIDWAY, "simulate", "--synthetic", "64x64*3:sparsity=0.5", "--tokens", "2,4", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("midway"), proc.stderr.read()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the old pair, untouched
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(f".sim.pid{proc.pid}.")]
    assert leftovers, "the killed writer's temporary directory should be beside out, named with its pid"
    # the next writer replaces the pair and removes the dead writer's leftovers
    _simulate(out, "2,4")
    assert _consistent(out) == [2, 4]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(f".sim.pid{proc.pid}.")]


def test_kill_at_random_moments_always_leaves_a_consistent_pair(tmp_path):
    out = tmp_path / "sim"
    _simulate(out, "1")
    rng = random.Random(0)
    seen = set()
    for i in range(4):
        tokens = "2,4" if i % 2 == 0 else "1"
        proc = subprocess.Popen(
            [sys.executable, "-m", "besa", "simulate", "--synthetic", "256x256*40:sparsity=0.5", "--tokens", tokens, "--out", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=_env(),
        )
        time.sleep(rng.uniform(0.5, 4.0))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        seen.add(tuple(_consistent(out)))
        assert not [p for p in out.iterdir() if p.stat().st_size == 0]
    assert seen  # each kill left one complete pair


def test_non_finite_or_negative_results_are_never_written(tmp_path):
    """The last line of defence: whatever the engine returns, summary.json is strict JSON and no count is negative."""
    import pytest

    from besa_common.errors import UserError
    from simulator.hardware import load_hardware
    from simulator.run import check_results, simulate, summarize, write_results
    from simulator.workload import synthetic

    hw = load_hardware("vitcod")
    df = simulate(synthetic("64x64:sparsity=0.5"), hw, "cycle", [1])
    summary = summarize(df, hw)
    check_results(df, summary)  # the real thing passes
    bad = df.copy()
    bad.loc[0, "cycles"] = -5  # what an int64 overflow looks like
    with pytest.raises(UserError, match="negative"):
        write_results(tmp_path / "o", bad, summary)
    bad = df.copy()
    bad["utilization"] = float("inf")
    with pytest.raises(UserError, match="not finite"):
        write_results(tmp_path / "o", bad, summary)
    with pytest.raises(UserError, match="non-finite"):
        write_results(tmp_path / "o", df, {**summary, "ridge_tokens": float("inf")})
    assert not (tmp_path / "o").exists()


def test_hardware_ranges_name_real_fields_and_admit_the_presets():
    from dataclasses import fields

    from simulator.hardware import RANGES, Hardware, list_presets, load_hardware

    names = {f.name for f in fields(Hardware)}
    assert set(RANGES) <= names
    for p in list_presets():
        load_hardware(p)  # every shipped preset is inside the declared ranges
