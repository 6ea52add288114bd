"""The block driver on tiny random GQA models: capture, targets, propagation, outputs, resume."""

import json

import numpy as np
import pytest
import torch

import pruning.methods  # noqa: F401  (fills the registry)
from besa_common.errors import UserError
from besa_common.masks import read_masks
from pruning.driver import DriverConfig, capture_inputs, prune_model
from pruning.methods.base import LINEAR_NAMES, METHODS, BlockResult, PruningMethod
from pruning.methods.scoring import row_mask
from tests.pruning.helpers import tiny_model

CFG = dict(progress=False)


def _calib(n=4, T=16, seed=0):
    return torch.randint(0, 256, (n, T), generator=torch.Generator().manual_seed(seed))


def test_capture_has_every_kwarg_and_matches_hf_hidden_states():
    model = tiny_model()
    calib = _calib()
    inputs = capture_inputs(model, calib, torch.device("cpu"), torch.device("cpu"))
    assert "position_embeddings" in inputs.kwargs and len(inputs.kwargs["position_embeddings"]) == 2
    assert "position_ids" in inputs.kwargs
    with torch.no_grad():
        hs = model(calib, output_hidden_states=True).hidden_states
        assert torch.equal(inputs.hidden, hs[0])
        # Block 0 run with the captured kwargs reproduces HF's own block-1 input.
        assert torch.allclose(inputs.run(model.model.layers[0], 2, torch.device("cpu")), hs[1][2:3], atol=1e-6)


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
@pytest.mark.parametrize("pattern", [None, (2, 4), (4, 8), (1, 4)])
def test_methods_through_driver_gqa(tmp_path, method, pattern):
    model = tiny_model()
    dense = {n: p.detach().clone() for n, p in model.named_parameters()}
    target = 0.5 if pattern is None else 1 - pattern[0] / pattern[1]  # N:M = N kept of M
    cfg = DriverConfig(sparsity=target, pattern=pattern, **CFG)
    manifest = prune_model(model, METHODS[method](), _calib(), tmp_path, cfg, meta={"model": "tiny"})
    keep, mf = read_masks(tmp_path / "masks.safetensors")
    assert len(keep) == 14 and mf["method"] == method
    assert keep["model.layers.1.self_attn.k_proj"].shape == (32, 64)  # GQA k/v narrower than q
    for name, k in keep.items():
        w = model.get_submodule(name).weight.detach()
        assert (w[~torch.from_numpy(k)] == 0).all()  # masks are in the weights
        if pattern is not None:  # n:m exact in every group: n kept
            n, m = pattern
            assert (k.reshape(k.shape[0], -1, m).sum(-1) == n).all()
        elif method in ("magnitude", "wanda"):  # int(C * S) per row
            assert ((~k).sum(1) == int(k.shape[1] * 0.5)).all()
        else:  # sparsegpt: per-row varies, the layer hits the target exactly
            assert (~k).sum() == int(k.size * 0.5) or abs((~k).mean() - 0.5) < 1e-3
        if method != "sparsegpt":  # masking-only: kept weights untouched
            assert torch.equal(w[torch.from_numpy(k)], dense[name + ".weight"][torch.from_numpy(k)])
    assert manifest["realised_sparsity"] == pytest.approx(target, abs=1e-3)
    assert manifest["version"] == 2 and manifest["pattern_convention"] == "n_kept_of_m"
    alloc = json.loads((tmp_path / "allocation.json").read_text())
    entry = alloc["layers"]["model.layers.0.mlp.down_proj"]
    assert entry["block"] == 0 and entry["proj"] == "down_proj" and entry["shape"] == [64, 160]
    assert entry["target"] == pytest.approx(target) and len(entry["row_sparsity"]) == 64
    assert entry["realised"] == pytest.approx(float(1 - keep["model.layers.0.mlp.down_proj"].mean()))
    man = json.loads((tmp_path / "manifest.json").read_text())
    assert man["layers"]["model.layers.0.mlp.down_proj"]["realised"] == entry["realised"]
    assert not (tmp_path / "checkpoint").exists()


def test_wanda_matches_direct_computation_on_block0(tmp_path):
    """Driver + Wanda on block 0 equals the statistic computed from HF hidden states by hand."""
    model = tiny_model()
    ref = tiny_model()
    calib = _calib()
    prune_model(model, METHODS["wanda"](), calib, tmp_path, DriverConfig(sparsity=0.5, **CFG))
    keep, _ = read_masks(tmp_path / "masks.safetensors")
    feats = {}
    lin = ref.model.layers[0].mlp.down_proj
    h = lin.register_forward_hook(lambda m, a, o: feats.setdefault("x", []).append(a[0].detach()))
    with torch.no_grad():
        for j in range(len(calib)):
            ref(calib[j : j + 1])
    h.remove()
    X = torch.cat(feats["x"])  # (n, T, in)
    stat = (X**2).sum(1).mean(0)  # mean over windows of ||X_c||^2
    expect = row_mask(lin.weight.abs() * stat.sqrt(), 0.5)
    assert np.array_equal(keep["model.layers.0.mlp.down_proj"], expect.numpy())


class _Recorder(PruningMethod):
    """A test method: records its targets and prunes nothing but one weight per layer."""

    name = "recorder"
    needs_targets = True

    def __init__(self):
        self.targets = {}

    def prune_block(self, block, inputs, targets, job):
        self.targets[job.index] = targets.clone()
        keep = {}
        for n in LINEAR_NAMES:
            k = torch.ones_like(block.get_submodule(n).weight, dtype=torch.bool)
            k[0, 0] = False
            keep[n] = k
        return BlockResult(keep=keep, record={"layers": {"mlp.up_proj": {"expected": 0.25}}, "note": job.index})


@pytest.mark.parametrize("mode", ["pruned", "dense"])
def test_target_modes(tmp_path, mode):
    model = tiny_model(layers=3)
    calib = _calib()
    with torch.no_grad():
        hs = tiny_model(layers=3)(calib, output_hidden_states=True).hidden_states
    rec = _Recorder()
    prune_model(model, rec, calib, tmp_path, DriverConfig(sparsity=0.5, target=mode, **CFG))
    assert torch.allclose(rec.targets[0], hs[1], atol=1e-5)  # block 0: both modes see dense inputs
    if mode == "dense":  # the dense model's own trajectory
        assert torch.allclose(rec.targets[1], hs[2], atol=1e-5)
    else:  # dense block 1 on pruned-propagated inputs: differs from the dense trajectory
        assert not torch.allclose(rec.targets[1], hs[2], atol=1e-6)
    alloc = json.loads((tmp_path / "allocation.json").read_text())
    assert alloc["layers"]["model.layers.1.mlp.up_proj"]["expected"] == 0.25
    assert alloc["layers"]["model.layers.1.mlp.down_proj"]["expected"] is None
    assert alloc["blocks"]["2"]["note"] == 2


class _Interrupt(Exception):
    pass


@pytest.mark.parametrize("method,wbits", [("wanda", None), ("sparsegpt", None), ("wanda", 4), ("sparsegpt", 4)])
def test_resume_after_interruption_gives_identical_masks(tmp_path, method, wbits):
    calib = _calib(n=3, T=16)
    cfg = DriverConfig(sparsity=0.5, wbits=wbits, group_size=32, **CFG)
    ref_model = tiny_model(layers=3)
    prune_model(ref_model, METHODS[method](), calib, tmp_path / "ref", cfg, meta={"model": "tiny"})
    ref_keep, _ = read_masks(tmp_path / "ref" / "masks.safetensors")

    def boom(i):
        if i == 1:
            raise _Interrupt

    run = tmp_path / "run"
    with pytest.raises(_Interrupt):
        prune_model(tiny_model(layers=3), METHODS[method](), calib, run, cfg, meta={"model": "tiny"}, on_block_done=boom)
    assert json.loads((run / "checkpoint" / "state.json").read_text())["done"] == 2
    assert not (run / "masks.safetensors").exists()
    resumed = tiny_model(layers=3)
    seen = []
    prune_model(resumed, METHODS[method](), calib, run, cfg, meta={"model": "tiny"}, on_block_done=seen.append)
    keep, _ = read_masks(run / "masks.safetensors")
    assert set(keep) == set(ref_keep)
    for n in keep:
        assert np.array_equal(keep[n], ref_keep[n]), n
    for (n, p), (_, q) in zip(resumed.named_parameters(), ref_model.named_parameters()):
        assert torch.equal(p, q), n  # weights too (SparseGPT updates, quantization)
    if wbits:
        assert (run / "quant.safetensors").is_file()
    # A different run refuses the stale checkpoint instead of mixing results.
    with pytest.raises(_Interrupt):
        prune_model(tiny_model(layers=3), METHODS[method](), calib, run, cfg, meta={"model": "tiny"}, on_block_done=boom)
    with pytest.raises(UserError, match="different run"):
        prune_model(tiny_model(layers=3), METHODS[method](), calib, run, DriverConfig(sparsity=0.6, **CFG), meta={"model": "tiny"})


def test_same_seed_bit_identical(tmp_path):
    calib = _calib()
    for d in ("a", "b"):
        prune_model(tiny_model(), METHODS["sparsegpt"](), calib, tmp_path / d, DriverConfig(sparsity=0.5, **CFG))
    a, _ = read_masks(tmp_path / "a" / "masks.safetensors")
    b, _ = read_masks(tmp_path / "b" / "masks.safetensors")
    assert all(np.array_equal(a[n], b[n]) for n in a)


def test_layer_sparsity_dict_and_offload(tmp_path):
    model = tiny_model()
    ls = {"model.layers.0.mlp.up_proj": 0.25, "model.layers.1.self_attn.q_proj": 0.75}
    prune_model(model, METHODS["wanda"](), _calib(), tmp_path, DriverConfig(sparsity=0.5, layer_sparsity=ls, offload_acts=True, **CFG))
    keep, _ = read_masks(tmp_path / "masks.safetensors")
    assert ((~keep["model.layers.0.mlp.up_proj"]).sum(1) == 16).all()  # int(64 * 0.25)
    assert ((~keep["model.layers.1.self_attn.q_proj"]).sum(1) == 48).all()
    assert ((~keep["model.layers.1.mlp.up_proj"]).sum(1) == 32).all()
    with pytest.raises(UserError, match="unknown layer"):
        prune_model(tiny_model(), METHODS["wanda"](), _calib(), tmp_path / "x", DriverConfig(sparsity=0.5, layer_sparsity={"nope": 0.1}, **CFG))


def test_config_validation():
    with pytest.raises(UserError):
        DriverConfig(sparsity=1.0)
    with pytest.raises(UserError):
        DriverConfig(sparsity=0.5, pattern=(4, 2))
    with pytest.raises(UserError):
        DriverConfig(sparsity=0.5, target="sideways")
    with pytest.raises(UserError):
        DriverConfig(sparsity=0.5, layer_sparsity={"a": 1.5})


def test_group_size_must_divide_in_features(tmp_path):
    with pytest.raises(UserError, match="group-size"):
        prune_model(tiny_model(), METHODS["wanda"](), _calib(), tmp_path, DriverConfig(sparsity=0.5, wbits=4, group_size=48, **CFG))
