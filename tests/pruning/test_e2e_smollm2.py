"""End to end on the real SmolLM2-135M through the CLI (slow: loads a 135 M-parameter model)."""

import json

import numpy as np
import pytest

from pruning.cli import main
from simulator.masks import read_masks

pytestmark = pytest.mark.slow


def test_smollm2_structure(smollm2):
    from pruning.models import load_model

    model, tok = load_model("smollm2-135m")
    cfg = model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads) == (30, 576, 9, 3)
    assert model.model.layers[0].self_attn.k_proj.weight.shape == (192, 576)  # GQA
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # tied
    assert (smollm2 / "model.safetensors").is_file()


def test_prune_and_eval_cli(tmp_path, capsys, smollm2):
    out = tmp_path / "run"
    common = ["--nsamples", "2", "--seqlen", "64", "--calib-dataset", "wiki", "--no-progress"]
    assert main(["prune", "--method", "wanda", "--sparsity", "0.5", *common, "--out", str(out)]) == 0
    keep, manifest = read_masks(out / "masks.safetensors")
    assert len(keep) == 30 * 7
    for k in keep.values():
        assert ((~k).sum(1) == int(k.shape[1] * 0.5)).all()  # int(C * S) per row
    man = json.loads((out / "manifest.json").read_text())
    assert man["model"] == "smollm2-135m" and man["calibration"]["seqlen"] == 64 and man["realised_sparsity"] == 0.5
    capsys.readouterr()
    ev = ["--seqlen", "128", "--max-windows", "2", "--json", "--no-progress"]
    assert main(["eval", *ev]) == 0
    dense = json.loads(capsys.readouterr().out)
    assert main(["eval", "--masks", str(out / "masks.safetensors"), *ev, "--out", str(out)]) == 0
    pruned = json.loads(capsys.readouterr().out)
    assert dense["windows"] == pruned["windows"] == 2 and dense["dataset"] == "wiki"
    assert dense["sparsity"] == 0.0 and pruned["sparsity"] == pytest.approx(0.5)
    assert 5 < dense["ppl"] < 60  # a trained model on English prose
    assert pruned["ppl"] > dense["ppl"]
    assert json.loads((out / "eval.json").read_text()) == pruned

    # 2:4 with SparseGPT: exact per group, weights updated
    out2 = tmp_path / "sgpt"
    assert main(["prune", "--method", "sparsegpt", "--pattern", "2:4", *common, "--out", str(out2)]) == 0
    keep2, _ = read_masks(out2 / "masks.safetensors")
    k = keep2["model.layers.29.mlp.down_proj"]
    assert ((~k).reshape(k.shape[0], -1, 4).sum(-1) == 2).all()
    assert not np.array_equal(k, keep["model.layers.29.mlp.down_proj"])
