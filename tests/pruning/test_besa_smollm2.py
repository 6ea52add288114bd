"""BESA end to end on the real SmolLM2-135M through the CLI (tiny calibration: mechanics, not quality)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from besa.cli import main
from besa_common.masks import read_masks

pytestmark = pytest.mark.slow

CAL = ["--nsamples", "2", "--seqlen", "64", "--seed", "0", "--calib-dataset", "wiki", "--no-progress", "--device", "cpu"]


def test_frozen_besa_equals_wanda_on_smollm2(tmp_path):
    assert main(["prune", "--method", "besa", "--freeze", "--sparsity", "0.5", *CAL, "--out", str(tmp_path / "b")]) == 0
    assert main(["prune", "--method", "wanda", "--sparsity", "0.5", *CAL, "--out", str(tmp_path / "w")]) == 0
    b, _ = read_masks(tmp_path / "b" / "masks.safetensors")
    w, _ = read_masks(tmp_path / "w" / "masks.safetensors")
    assert b.keys() == w.keys() and len(b) == 210
    for k in b:
        assert np.array_equal(b[k], w[k]), k


def test_besa_joint_4bit_cli_then_eval(tmp_path, capsys):
    out = tmp_path / "q"
    assert main(["prune", "--method", "besa", "--wbits", "4", "--group-size", "64", *CAL, "--out", str(out)]) == 0
    alloc = json.loads((out / "allocation.json").read_text())
    q = alloc["layers"]["model.layers.0.self_attn.q_proj"]
    assert q["expected"] is not None and abs(q["realised"] - q["expected"]) < 0.01
    assert (out / "quant.safetensors").is_file()
    capsys.readouterr()
    assert main(["eval", "--masks", str(out), "--dataset", "wiki", "--seqlen", "64", "--max-windows", "2", "--json", "--no-progress", "--device", "cpu"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["quant"]["wbits"] == 4 and math.isfinite(res["ppl"])
    # 128 does not divide SmolLM2's 576 in-features: a one-line error, exit status 2
    assert main(["prune", "--method", "besa", "--wbits", "4", "--group-size", "128", *CAL, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "does not divide" in err[-1]
