"""The weights file (updated kept weights of a run): format by hand, round trips, digests, and every
consumer rebuilding exactly the driver's model (SparseGPT, SparseGPT + 4-bit)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pruning.methods  # noqa: F401  (fills the registry)
from besa_common.errors import UserError
from besa_common.masks import write_masks
from besa_common.weights import check_weights, kept_values, read_weights, scatter_kept, sha256_file, write_weights
from pruning.driver import DriverConfig, prune_model
from pruning.methods.base import METHODS
from pruning.runfiles import apply_run, open_run
from tests.pruning.helpers import tiny_model


def _write_pair(tmp_path, keep, dense):
    masks = tmp_path / "masks.safetensors"
    write_masks(masks, keep, {"method": "x", "updated_weights": True})
    w = tmp_path / "weights.safetensors"
    write_weights(w, keep, lambda n: dense[n], sha256_file(masks), {"method": "x"})
    return masks, w


def test_hand_computed_order_and_round_trip(tmp_path):
    keep = {"a": np.array([[1, 0, 1], [0, 1, 1]], bool)}
    dense = {"a": np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], np.float32)}
    assert kept_values(dense["a"], keep["a"]).tolist() == [1.0, 3.0, 5.0, 6.0]  # row-major over kept
    masks, w = _write_pair(tmp_path, keep, dense)
    values, manifest = read_weights(w, masks_path=masks)
    assert values["a"].tolist() == [1.0, 3.0, 5.0, 6.0]
    assert manifest["layers"]["a"] == {"shape": [2, 3], "kept": 4} and manifest["method"] == "x"
    assert scatter_kept(values["a"], keep["a"]).tolist() == [[1.0, 0.0, 3.0], [0.0, 5.0, 6.0]]
    # same bytes on a second write (deterministic header)
    first = w.read_bytes()
    write_weights(w, keep, lambda n: dense[n], sha256_file(masks), {"method": "x"})
    assert w.read_bytes() == first


@settings(max_examples=30, deadline=None)
@given(shapes=st.lists(st.tuples(st.integers(1, 7), st.integers(1, 13)), min_size=1, max_size=3), density=st.floats(0, 1), seed=st.integers(0, 2**16))
def test_round_trip_property(tmp_path_factory, shapes, density, seed):
    rng = np.random.default_rng(seed)
    keep = {f"l{i}": rng.random(s) < density for i, s in enumerate(shapes)}
    keep = {n: k if k.any() else np.ones_like(k) for n, k in keep.items()}
    dense = {n: (rng.standard_normal(k.shape) * k).astype(np.float32) for n, k in keep.items()}
    masks, w = _write_pair(tmp_path_factory.mktemp("w"), keep, dense)
    values, _ = read_weights(w, masks_path=masks)
    check_weights(values, keep)
    for n in keep:
        assert np.array_equal(scatter_kept(values[n], keep[n]), dense[n])
    assert w.stat().st_size < 512 + 100 * len(keep) + 4 * sum(int(k.sum()) for k in keep.values())


def test_digest_corruption_and_counts_are_user_errors(tmp_path):
    keep = {"a": np.array([[1, 0], [1, 1]], bool)}
    masks, w = _write_pair(tmp_path, keep, {"a": np.ones((2, 2), np.float32)})
    other = tmp_path / "other.safetensors"
    write_masks(other, {"a": np.array([[1, 1], [1, 1]], bool)}, {"method": "x"})
    with pytest.raises(UserError, match="other masks"):
        read_weights(w, masks_path=other)
    with pytest.raises(UserError, match="keeps 4"):
        check_weights(read_weights(w)[0], {"a": np.ones((2, 2), bool)})
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(w.read_bytes()[:-3])
    with pytest.raises(UserError, match="truncated or corrupt"):
        read_weights(bad)
    with pytest.raises(UserError, match="not a weights file"):
        read_weights(masks)


# ----------------------------------------------------------------------------- driver -> consumers

CFG = dict(progress=False)


def _calib(n=3, T=16):
    return torch.randint(0, 256, (n, T), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("wbits", [None, 4])
def test_sparsegpt_run_dir_rebuilds_the_driver_model_exactly(tmp_path, wbits):
    model = tiny_model(layers=2)
    prune_model(model, METHODS["sparsegpt"](), _calib(), tmp_path, DriverConfig(sparsity=0.5, wbits=wbits, group_size=32, **CFG), meta={"model": "tiny"})
    man = json.loads((tmp_path / "manifest.json").read_text())
    assert man["updated_weights"] is True
    w = tmp_path / "weights.safetensors"
    dense_bytes = sum(p.numel() * 4 for n, p in model.named_parameters() if n.startswith("model.layers") and p.ndim == 2)
    assert 0.45 * dense_bytes < w.stat().st_size < 0.55 * dense_bytes  # kept values only
    _, wman = read_weights(w, masks_path=tmp_path / "masks.safetensors")
    assert len(wman["layers"]) == 14
    rebuilt = tiny_model(layers=2)
    info = apply_run(rebuilt, open_run(tmp_path))
    assert info["weights"] == str(w) and (info["quant"] is not None) == (wbits is not None)
    for (n, p), (_, q) in zip(rebuilt.named_parameters(), model.named_parameters()):
        assert torch.equal(p, q), n
    # the original weights with the masks alone are a different model: that is the bug this file fixes
    plain = tiny_model(layers=2)
    from besa_common.masks import read_masks
    from pruning.models import apply_masks

    apply_masks(plain, read_masks(tmp_path / "masks.safetensors")[0])
    assert not torch.equal(plain.model.layers[1].mlp.up_proj.weight, model.model.layers[1].mlp.up_proj.weight)
    if wbits:  # --no-quant: the updated weights before quantization, exactly what the file stores
        nq = tiny_model(layers=2)
        apply_run(nq, open_run(tmp_path, quant=False))
        values, _ = read_weights(w)
        k = read_masks(tmp_path / "masks.safetensors")[0]["model.layers.0.self_attn.q_proj"]
        assert np.array_equal(nq.model.layers[0].self_attn.q_proj.weight.detach().numpy()[k], values["model.layers.0.self_attn.q_proj"])


def test_masking_only_run_has_no_weights_file_and_removes_a_stale_one(tmp_path):
    prune_model(tiny_model(), METHODS["sparsegpt"](), _calib(), tmp_path, DriverConfig(sparsity=0.5, **CFG))
    assert (tmp_path / "weights.safetensors").is_file()
    prune_model(tiny_model(), METHODS["wanda"](), _calib(), tmp_path, DriverConfig(sparsity=0.5, **CFG))
    assert not (tmp_path / "weights.safetensors").exists()
    assert json.loads((tmp_path / "manifest.json").read_text())["updated_weights"] is False
    assert open_run(tmp_path).weights is None


def test_consumers_refuse_updated_masks_without_weights(tmp_path, capsys):
    from besa.cli import main

    model = tiny_model()
    d = tmp_path / "model"
    model.save_pretrained(str(d))
    from tests.pruning.test_zeroshot import byte_tokenizer

    byte_tokenizer().save_pretrained(str(d))
    run = tmp_path / "run"
    prune_model(tiny_model(), METHODS["sparsegpt"](), _calib(), run, DriverConfig(sparsity=0.5, **CFG))
    (run / "weights.safetensors").unlink()
    capsys.readouterr()
    for argv in (
        ["eval", "--model", str(d), "--masks", str(run), "--seqlen", "8", "--json", "--no-progress"],
        ["export", "--model", str(d), "--masks", str(run), "--format", "hf", "--out", str(tmp_path / "x")],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "weights.safetensors is missing" in err and err.count("\n") == 1
    # masks written before the manifest key existed: the method registry decides (SparseGPT updates weights)
    from besa_common.masks import read_masks

    keep, man = read_masks(run / "masks.safetensors")
    man.pop("updated_weights")
    man.pop("layers")
    write_masks(run / "masks.safetensors", keep, man)
    with pytest.raises(UserError, match="changed the kept weights"):
        open_run(run)
    # a quantized run without its quant file: refused unless --no-quant
    q = tmp_path / "q"
    prune_model(tiny_model(), METHODS["wanda"](), _calib(), q, DriverConfig(sparsity=0.5, wbits=4, group_size=32, **CFG))
    (q / "quant.safetensors").unlink()
    with pytest.raises(UserError, match="--no-quant"):
        open_run(q)
    assert open_run(q, quant=False).quant is None
