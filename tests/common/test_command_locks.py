"""`besa prune`, `besa export` and `besa run` hold their output directory's writer lock: a second
writer (here a real holder process) fails at once with one line naming it, or waits with --wait.
Both happen before the model load (replaced here by a function that says it was reached)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from besa.cli import main
from besa_common.errors import UserError
from besa_common.masks import write_masks
from tests.common.test_locks import _holder

EXPERIMENT = """
[experiment]
name = "t"
[[runs]]
methods = ["magnitude"]
[[simulate]]
preset = "vitcod"
"""


@pytest.fixture
def reached(monkeypatch):
    import pruning.models

    def stop(*a, **k):
        raise UserError("reached the model load")

    monkeypatch.setattr(pruning.models, "load_model", stop)


def _argv(cmd: str, tmp_path, out) -> list[str]:
    if cmd == "prune":
        return ["prune", "--method", "magnitude", "--no-progress", "--out", str(out)]
    if cmd == "export":
        write_masks(tmp_path / "m.safetensors", {"model.layers.0.mlp.up_proj": np.ones((4, 8), bool)}, {"method": "magnitude"})
        return ["export", "--model", "smollm2-135m", "--masks", str(tmp_path / "m.safetensors"), "--format", "hf", "--out", str(out)]
    (tmp_path / "e.toml").write_text(EXPERIMENT)
    return ["run", str(tmp_path / "e.toml"), "--out", str(out), "--no-report"]


@pytest.mark.parametrize("cmd", ["prune", "export", "run"])
def test_second_writer_fails_at_once(cmd, tmp_path, capsys, reached):
    out = tmp_path / "out"
    proc = _holder(out, 300)
    try:
        t0 = time.perf_counter()
        rc = main(_argv(cmd, tmp_path, out))
        err = capsys.readouterr().err
        # "at once" = without waiting for the holder (which holds for 300 s); `besa run` first checks
        # every step's command line (imports the pruning parsers), which takes seconds on a loaded machine
        assert rc == 2 and time.perf_counter() - t0 < 120
        assert len(err.strip().splitlines()) == 1 and f"is being written by pid {proc.pid}" in err and "--wait" in err
        assert not out.exists() or not any(out.iterdir())
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("cmd", ["prune", "export"])
def test_wait_goes_on_when_the_holder_is_done(cmd, tmp_path, capsys, reached):
    out = tmp_path / "out"
    proc = _holder(out, 1.5)
    try:
        rc = main([*_argv(cmd, tmp_path, out), "--wait"])
        err = capsys.readouterr().err
        assert proc.wait(timeout=30) == 0  # the holder finished first ...
        assert rc == 2 and "reached the model load" in err  # ... then this writer went on to its work
        assert "waiting for it" in err
    finally:
        proc.kill()
        proc.wait()
