"""Golden digests of BESA's masks (and losses) on small fixed cases: any change to what BESA computes
fails here, so speed work cannot silently change results.

What is pinned: SHA-256 over every layer's keep mask (name, shape, packed bits), and for the method-level
cases also the first/last loss and Prodigy's final ``d`` as exact float hex (far more sensitive than the
masks: one changed rounding anywhere in a step shows up).  Cases: the method on the tiny random LLaMA
(row-wise default, layer-wise, no smoothing + 3 epochs + exact model budget, joint 4-bit, bf16 autocast,
learned 2:4), the block driver (pruned and dense targets), and the real SmolLM2-135M through the CLI
(slow; the shapes the benchmarks use).

Floating-point results depend on the torch build and on the CPU's vector unit (the BLAS picks its
kernels by it), so the digests were recorded for one (torch version, CPU capability) pair and the test
is skipped elsewhere.  To re-pin after an intended change of results, or on a new platform, run
``python tests/pruning/test_besa_golden.py`` and paste its output over ``GOLDEN`` — only after
checking that the change is intended.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

import pruning.methods  # noqa: F401  (fills the registry)
from pruning.methods.base import LINEAR_NAMES
from pruning.methods.besa import Besa, BesaConfig

PLATFORM = "2.13.0+cpu AVX512"  # torch.__version__ + CPU capability the digests below were recorded on

GOLDEN: dict[str, str] = {
    "method/bf16": "6e8edeed1a8eb9fcc7cf4ec47015a878338b028c244566d7142e56d3a417bef1",
    "method/layer": "f5c591066679b1a204e9a99c1dbe4d089ba77a55b4aa8578e488852fac407a14",
    "method/nm24": "3d3cd10c4aa77ba5b472589339b3d06574ff31b12776866af8df638bbbb074c6",
    "method/nosmooth_e3_model": "88026fafb9d4d10bdef4cf209d97fc6a9286e4faa769feaf1d258eb0e936710c",
    "method/row": "7765c1d92196dc0e0e47a246b5bd356f9938f1364a0627b0c2c06e62f4c851da",
    "method/wbits4": "9b848b719951a0a04da02ed745ee94d56ad81f2bed7d828edcc45fcfa257b4a8",
    "driver/pruned": "834d749b55b0302a73f9eccba4961c20955e2b5b54bdadbdb59ed949def2f53f",
    "driver/dense": "504d0fb2363a53d85e472212f4236f4e9fd46a8c7f2bb2561ddb764ec1afdd0b",
    "smollm2": "63d92f1cba78bc86f54ad6a346e65382a400723be841a22eef756123d09c3b92",
}


def platform_key() -> str:
    return f"{torch.__version__} {torch.backends.cpu.get_cpu_capability()}"


def mask_digest(keep: dict) -> str:
    """SHA-256 over ``name``, shape and packed bits of every mask, in name order (1 = kept)."""
    h = hashlib.sha256()
    for name in sorted(keep):
        k = np.asarray(keep[name], dtype=bool)
        h.update(f"{name}{k.shape}".encode())
        h.update(np.packbits(k).tobytes())
    return h.hexdigest()


def record_digest(res) -> str:
    """Masks plus the exact losses and Prodigy ``d`` of one ``prune_block`` result."""
    floats = [res.record.get(k) for k in ("loss_first", "loss_last", "prodigy_d")]
    tensors = {k: hashlib.sha256(v.numpy().tobytes()).hexdigest() for k, v in sorted(res.tensors.items())}
    extra = json.dumps([None if f is None else float(f).hex() for f in floats] + [tensors])
    return hashlib.sha256((mask_digest({k: v.numpy() for k, v in res.keep.items()}) + extra).encode()).hexdigest()


def _block_inputs(model, n=4, T=16, seed=0):
    from pruning.methods.base import BlockInputs

    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, T, model.config.hidden_size, generator=gen)
    pos = torch.arange(T).unsqueeze(0)
    cos_sin = model.model.rotary_emb(hidden[:1], pos)
    return BlockInputs(hidden=hidden, kwargs={"position_embeddings": cos_sin, "position_ids": pos, "attention_mask": None})


def _job(**kw):
    from pruning.methods.base import BlockJob

    base = dict(
        index=1, prefix="model.layers.1.", sparsity={n: 0.5 for n in LINEAR_NAMES}, pattern=None, device=torch.device("cpu"), autocast_dtype=None, seed=0
    )
    base.update(kw)
    return BlockJob(**base)


# case -> (BesaConfig options, BlockJob options)
METHOD_CASES = {
    "row": ({}, {}),
    "layer": ({"granularity": "layer"}, {}),
    "nosmooth_e3_model": ({"smoothing": False, "epochs": 3, "exact_budget": "model"}, {}),
    "wbits4": ({}, {"wbits": 4, "group_size": 32}),
    "bf16": ({}, {"autocast_dtype": torch.bfloat16}),
    "nm24": ({}, {"pattern": (2, 4)}),
}


def method_digest(case: str) -> str:
    from tests.pruning.helpers import tiny_model

    opts, jopts = METHOD_CASES[case]
    model = tiny_model(2)
    inputs = _block_inputs(model)
    torch.manual_seed(0)
    res = Besa(BesaConfig(verbose=False, **opts)).prune_block(model.model.layers[1], inputs, None, _job(**jopts))
    return record_digest(res)


def driver_digest(tmp_path, target: str) -> str:
    from besa_common.masks import read_masks
    from pruning.driver import DriverConfig, prune_model
    from tests.pruning.helpers import tiny_model

    calib = torch.randint(0, 256, (4, 24), generator=torch.Generator().manual_seed(0))
    out = tmp_path / f"driver_{target}"
    cfg = DriverConfig(sparsity=0.5, device="cpu", progress=False, target=target)
    prune_model(tiny_model(3), Besa(BesaConfig(epochs=1, verbose=False)), calib, out, cfg, meta={"model": "tiny"})
    keep, _ = read_masks(out / "masks.safetensors")
    return mask_digest(keep)


def smollm2_digest(tmp_path) -> str:
    from besa.cli import main
    from besa_common.masks import read_masks

    out = tmp_path / "smol"
    argv = ["prune", "--method", "besa", "--sparsity", "0.5", "--nsamples", "2", "--seqlen", "64", "--seed", "0"]
    argv += ["--calib-dataset", "wiki", "--no-progress", "--device", "cpu", "--out", str(out)]
    assert main(argv) == 0
    keep, _ = read_masks(out / "masks.safetensors")
    return mask_digest(keep)


needs_platform = pytest.mark.skipif(platform_key() != PLATFORM, reason=f"golden digests recorded on {PLATFORM}, this is {platform_key()}")


def test_digest_sees_a_single_flipped_bit():
    keep = {"a": np.ones((3, 9), dtype=bool), "b": np.zeros((2, 8), dtype=bool)}
    base = mask_digest(keep)
    keep["a"][2, 8] = False
    assert mask_digest(keep) != base
    assert mask_digest({"a": np.ones((9, 3), dtype=bool), "b": np.zeros((2, 8), dtype=bool)}) != base  # shape counts


@needs_platform
@pytest.mark.parametrize("case", sorted(METHOD_CASES))
def test_method_masks_and_losses_match_golden(case):
    assert method_digest(case) == GOLDEN[f"method/{case}"]


@needs_platform
@pytest.mark.parametrize("target", ["pruned", "dense"])
def test_driver_masks_match_golden(tmp_path, target):
    assert driver_digest(tmp_path, target) == GOLDEN[f"driver/{target}"]


@needs_platform
@pytest.mark.slow
def test_smollm2_masks_match_golden(tmp_path, smollm2):
    assert smollm2_digest(tmp_path) == GOLDEN["smollm2"]


if __name__ == "__main__":  # print the digests of this checkout (to re-pin; see the module docstring)
    import tempfile
    from pathlib import Path

    torch.set_num_threads(1)
    out = {f"method/{c}": method_digest(c) for c in sorted(METHOD_CASES)}
    with tempfile.TemporaryDirectory() as d:
        out.update({f"driver/{t}": driver_digest(Path(d), t) for t in ("pruned", "dense")})
        out["smollm2"] = smollm2_digest(Path(d))
    print(f"PLATFORM = {platform_key()!r}")
    print("GOLDEN = " + json.dumps(out, indent=4))
