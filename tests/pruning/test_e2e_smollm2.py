"""End to end on the real SmolLM2-135M through the CLI (slow: loads a 135 M-parameter model)."""

import json

import numpy as np
import pytest

from besa.cli import main
from besa_common.masks import read_masks

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


def test_sparsegpt_layer_error_below_wanda_on_real_block0(smollm2):
    """On SmolLM2 block 0 (8 x 512 wiki calibration tokens) SparseGPT's per-layer output error
    ||X (W - W_hat)^T||^2 is below Wanda's for all seven linears (run with -s to see the ratios)."""
    import torch

    from pruning.data import calibration
    from pruning.driver import capture_inputs
    from pruning.methods.base import LINEAR_NAMES, BlockJob
    from pruning.methods.scoring import InputNormStat, accumulate_inputs, mask_from_scores, wanda_scores
    from pruning.methods.sparsegpt import SparseGPTLayer
    from pruning.models import load_model

    model, tok = load_model("smollm2-135m")
    cpu = torch.device("cpu")
    inputs = capture_inputs(model, calibration(tok, "wiki", 8, 512, 0), cpu, cpu)
    block = model.model.layers[0]
    job = BlockJob(0, "model.layers.0.", {n: 0.5 for n in LINEAR_NAMES}, None, cpu, None, 0)
    X = {n: [] for n in LINEAR_NAMES}
    accumulate_inputs(block, inputs, job, LINEAR_NAMES, lambda n, x: X[n].append(x))
    for n in LINEAR_NAMES:
        W = block.get_submodule(n).weight.detach()
        layer, stat = SparseGPTLayer(W), InputNormStat()
        for x in X[n]:
            layer.add_batch(x)
            stat.update(n, x)
        Xc = torch.cat(X[n])  # (tokens, in)
        for pattern in (None, (2, 4)):
            W_s, keep_s, _ = layer.prune(W, 0.5, pattern)
            keep_w = mask_from_scores(wanda_scores(W, stat.stat[n]), 0.5, pattern)
            err_s = float(((Xc @ (W - W_s * keep_s).t()) ** 2).sum())
            err_w = float(((Xc @ (W - W * keep_w).t()) ** 2).sum())
            print(f"{n:18s} {str(pattern):7s} sparsegpt/wanda output error {err_s / err_w:.3f}")
            assert err_s < err_w
