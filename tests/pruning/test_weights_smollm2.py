"""SparseGPT on the real SmolLM2-135M: ``besa eval --masks DIR`` reproduces the perplexity of the
model the driver ended with EXACTLY (the run directory's weights.safetensors carries the OBS update);
the masks alone on the original weights give a different, worse number (the bug this fixed)."""

import json

import pytest

from besa.cli import main

pytestmark = pytest.mark.slow


# 4-bit only (CI time: 87 s per case): it carries weights.safetensors AND quant.safetensors, a superset of the
# unquantized case; the weights-only load is tested on a tiny model in tests/pruning/test_weights_file.py.
@pytest.mark.parametrize("wbits", [4])
def test_eval_reproduces_in_driver_sparsegpt_ppl(tmp_path, capsys, smollm2, wbits):
    import torch

    import pruning.methods  # noqa: F401
    from pruning.data import calibration, eval_tokens
    from pruning.driver import DriverConfig, prune_model
    from pruning.evaluate import perplexity
    from pruning.methods.base import METHODS
    from pruning.models import load_model

    model, tok = load_model("smollm2-135m")
    calib = calibration(tok, "wiki", 4, 128, 0)
    cfg = DriverConfig(sparsity=0.5, wbits=wbits, group_size=64, device="cpu", progress=False)
    prune_model(model, METHODS["sparsegpt"](), calib, tmp_path, cfg, meta={"model": "smollm2-135m"})
    tokens = eval_tokens(tok, "wiki", "test", seqlen=128)
    in_driver = perplexity(model, tokens, 128, 4, torch.device("cpu"), None, progress=False)["ppl"]
    capsys.readouterr()
    ev = ["eval", "--seqlen", "128", "--max-windows", "4", "--json", "--no-progress", "--device", "cpu"]
    assert main([*ev, "--masks", str(tmp_path)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["ppl"] == in_driver  # exactly: same weights, same arithmetic
    assert res["weights"].endswith("weights.safetensors") and (res["quant"] is not None) == (wbits is not None)
    # the masks alone (the pre-fix behaviour): a clearly different model
    (tmp_path / "weights.safetensors").rename(tmp_path / "aside.safetensors")
    man = json.loads((tmp_path / "manifest.json").read_text())
    assert man["updated_weights"] is True
    from besa_common.masks import read_masks
    from pruning.models import apply_masks

    plain, _ = load_model("smollm2-135m")
    apply_masks(plain, read_masks(tmp_path / "masks.safetensors")[0])
    masks_only = perplexity(plain, tokens, 128, 4, torch.device("cpu"), None, progress=False)["ppl"]
    assert abs(masks_only - in_driver) > 0.01 * in_driver
    assert main([*ev, "--masks", str(tmp_path)]) == 2  # refused without the weights file
