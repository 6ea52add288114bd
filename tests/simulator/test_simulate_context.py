"""``besa simulate --context``: one context per token count, 0 = a fresh prompt, the model taken from the
masks' manifest, and ``--hw`` help that lists every shipped preset."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

import pytest

from besa.cli import main
from besa_common.masks import write_masks
from simulator.hardware import list_presets
from tests.simulator.test_cli import run_cli


def _summary(out):
    return json.loads((out / "summary.json").read_text())


def test_context_per_token_count_equals_separate_runs(tmp_path, capsys):
    spec = ["--synthetic", "smollm2-135m[1]:sparsity=0.5"]
    code, out, err = run_cli([*spec, "--tokens", "1,64", "--context", "4096,0", "--out", str(tmp_path / "both")], capsys)
    assert code == 0, err
    assert "context 0 = a fresh prompt" in out
    both = _summary(tmp_path / "both")
    assert both["decoder"]["context"] == {"1": 4096, "64": 0}
    for n, c in ((1, 4096), (64, 0)):
        code, _, err = run_cli([*spec, "--tokens", str(n), "--context", str(c), "--out", str(tmp_path / f"t{n}")], capsys)
        assert code == 0, err
        one = _summary(tmp_path / f"t{n}")["totals"][str(n)]
        assert {k: v for k, v in both["totals"][str(n)].items() if k.startswith("e2e_")} == {k: v for k, v in one.items() if k.startswith("e2e_")}
    dec = pd.read_csv(tmp_path / "both" / "decoder.csv")
    assert set(zip(dec["tokens"], dec["context"])) == {(1, 4096), (64, 0)}
    # a fresh prompt: every attended key is one of the prompt's own (N(N+1)/2 per head dimension pair)
    att = dec[(dec["kind"] == "attention") & (dec["tokens"] == 64)].iloc[0]
    assert att["macs"] == 2 * 576 * (64 * 65 // 2)


def test_context_list_must_match_tokens(tmp_path, capsys):
    code, _, err = run_cli(["--synthetic", "smollm2-135m[1]", "--tokens", "1,64", "--context", "1,2,3", "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "one per --tokens count (2)" in err


def test_model_comes_from_the_masks_manifest(tmp_path, capsys):
    rng = np.random.default_rng(0)
    keep = {"model.layers.0.self_attn.q_proj": rng.random((576, 576)) < 0.5}
    write_masks(tmp_path / "masks.safetensors", keep, {"model": "smollm2-135m", "method": "test"})
    code, out, err = run_cli(["--masks", str(tmp_path / "masks.safetensors"), "--context", "16", "--out", str(tmp_path / "o")], capsys)
    assert code == 0, err
    assert _summary(tmp_path / "o")["decoder"]["model"] == "smollm2-135m"
    write_masks(tmp_path / "anon.safetensors", keep, {"method": "test"})  # no model named: --model is asked for
    code, _, err = run_cli(["--masks", str(tmp_path / "anon.safetensors"), "--context", "16", "--out", str(tmp_path / "p")], capsys)
    assert code == 2 and "--model" in err


def test_hw_help_lists_every_shipped_preset(capsys):
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in list_presets():
        assert name in text
