"""besa export -> besa masks extract gives back the masks file's masks bit for bit (hf, compressed
sparse-bitmask, compressed sparse-24-bitmask); the hf export loads with transformers' from_pretrained
and with lm-eval's own ``hf`` model string (what ``lm_eval --model hf --model_args pretrained=DIR`` runs)."""

from __future__ import annotations

import json

import pytest
import torch

from besa.cli import main
from besa_common.extract import extract_masks
from besa_common.masks import read_masks, read_masks_packed, write_masks
from tests.pruning.test_zeroshot import byte_tokenizer


def _keep(model, pattern: str, seed=1):
    from pruning.models import linear_layers

    g = torch.Generator().manual_seed(seed)
    keep = {}
    for n, lin in linear_layers(model).items():
        r, c = lin.weight.shape
        if pattern == "2:4":  # exactly 2 kept of every 4 input weights
            idx = torch.rand(r, c // 4, 4, generator=g).argsort(-1)[..., :2]
            k = torch.zeros(r, c // 4, 4, dtype=torch.bool).scatter_(-1, idx, True).reshape(r, c)
        else:
            k = torch.rand(r, c, generator=g) < 0.5
        keep[n] = k.numpy()
    return keep


@pytest.fixture
def run(tiny_llama, tmp_path):
    d = tmp_path / "tiny"
    tiny_llama.save_pretrained(str(d))
    byte_tokenizer().save_pretrained(str(d))

    def make(pattern):
        masks = tmp_path / f"run-{pattern.replace(':', 'x')}" / "masks.safetensors"
        write_masks(masks, _keep(tiny_llama, pattern), {"model": str(d), "method": "random-test"})
        return d, masks

    return make


def _export(d, masks, fmt, out):
    assert main(["export", "--model", str(d), "--masks", str(masks), "--format", fmt, "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize(
    "fmt, pattern, sparse_format",
    [
        ("hf", "unstructured", None),
        ("compressed", "unstructured", "sparse-bitmask"),
        ("compressed", "2:4", "sparse-24-bitmask"),
    ],
)
def test_export_then_extract_gives_identical_masks(run, tmp_path, capsys, fmt, pattern, sparse_format):
    d, masks = run(pattern)
    out = _export(d, masks, fmt, tmp_path / "export")
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg.get("quantization_config") or {}).get("sparsity_config", {}).get("format") == sparse_format
    ref, shapes, _ = read_masks_packed(masks)
    ex = extract_masks(out)
    assert set(ex.packed) == set(ref) and ex.shapes == shapes
    assert all(ex.packed[n].tobytes() == ref[n].tobytes() for n in ref)  # byte-identical
    # and through the CLI: the written masks file holds the same tensors
    assert main(["masks", "extract", str(out), "--out", str(tmp_path / "x.safetensors")]) == 0
    got, _, manifest = read_masks_packed(tmp_path / "x.safetensors")
    assert all(got[n].tobytes() == ref[n].tobytes() for n in ref)
    assert manifest["source"]["kind"] == ("hf-zeros" if fmt == "hf" else "compressed-tensors")


def test_sparse24_export_reloads_to_the_masked_model(run, tmp_path, tiny_llama):
    from pruning.export import load_exported
    from pruning.models import apply_masks, load_model

    d, masks = run("2:4")
    out = _export(d, masks, "compressed", tmp_path / "ct24")
    from safetensors import safe_open

    parts = {}
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        for k in f.keys():
            if k.startswith("model.layers.0.mlp.up_proj."):
                parts[k.rsplit(".", 1)[1]] = f.get_tensor(k)
    assert set(parts) == {"shape", "compressed", "bitmask"}  # what vLLM's 2:4 kernels load
    assert tuple(parts["compressed"].shape) == (160, 32) and parts["shape"].reshape(-1).tolist() == [160, 64]
    ref, _ = load_model(str(d))
    keep = {n: torch.from_numpy(k) for n, k in read_masks(masks)[0].items()}
    apply_masks(ref, keep)
    back, _ = load_exported(out)
    ids = torch.randint(0, 256, (1, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(back(ids).logits, ref(ids).logits, atol=1e-6, rtol=0)


def test_hf_export_loads_in_transformers_and_lm_eval(run, tmp_path):
    """`AutoModelForCausalLM.from_pretrained(EXPORT_DIR)` and lm-eval's own `hf` model string on the fixtures."""
    from transformers import AutoModelForCausalLM

    from pruning import zeroshot

    d, masks = run("unstructured")
    out = _export(d, masks, "hf", tmp_path / "hf")
    model = AutoModelForCausalLM.from_pretrained(str(out))
    zeros = float((model.model.layers[0].mlp.up_proj.weight == 0).float().mean())
    assert zeros == pytest.approx(0.5, abs=0.05)

    from lm_eval import evaluator
    from lm_eval.tasks import TaskManager

    rows = {"piqa": zeroshot.load_task_rows("piqa", zeroshot.FIXTURES)}
    with zeroshot.lmeval.offline():
        (tmp_path / "tasks").mkdir()
        tasks, _ = zeroshot.build_tasks(["piqa"], zeroshot.FIXTURES, rows, tmp_path / "tasks")
        res = evaluator.simple_evaluate(
            model="hf", model_args=f"pretrained={out},device=cpu,dtype=float32", tasks=tasks, limit=4, task_manager=TaskManager(include_defaults=False)
        )
    acc = res["results"]["piqa"]["acc,none"]
    assert 0.0 <= acc <= 1.0 and res["config"]["model"] == "hf"
