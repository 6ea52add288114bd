"""Export: the sparse-bitmask format by hand, round trips (logits equal), sizes, quantization, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from besa_common.errors import UserError
from pruning import bitmask, export
from tests.pruning.test_zeroshot import byte_tokenizer


def test_bitmask_hand_computed():
    w = torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 3.0]])
    parts = bitmask.bitmask_compress(w)
    assert parts["shape"].tolist() == [[2], [3]]
    assert parts["compressed"].tolist() == [1.0, 2.0, 3.0]
    assert parts["bitmask"].tolist() == [[0b101], [0b100]]  # bit c of row r = W[r, c] != 0, little bit order
    assert parts["row_offsets"].tolist() == [0, 2]
    assert parts["bitmask"].dtype == torch.uint8 and parts["row_offsets"].dtype == torch.int64
    assert torch.equal(bitmask.bitmask_decompress(parts), w)


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 9), cols=st.integers(1, 21), density=st.floats(0, 1), seed=st.integers(0, 2**16))
def test_bitmask_round_trip_property(rows, cols, density, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g) * (torch.rand(rows, cols, generator=g) < density)
    parts = bitmask.bitmask_compress(w)
    assert parts["compressed"].numel() == int((w != 0).sum())
    assert tuple(parts["bitmask"].shape) == (rows, (cols + 7) // 8)
    assert torch.equal(bitmask.bitmask_decompress(parts), w)


def test_bitmask_matches_compressed_tensors_packing():
    """Our bitmask bytes are exactly compressed-tensors' pack_bitmasks (the format vLLM reads)."""
    from compressed_tensors.utils.helpers import pack_bitmasks

    w = torch.randn(5, 19) * (torch.rand(5, 19) > 0.5)
    assert torch.equal(bitmask.bitmask_compress(w)["bitmask"], pack_bitmasks(w != 0))


def test_corrupt_bitmask_is_a_user_error():
    parts = bitmask.bitmask_compress(torch.tensor([[1.0, 0.0], [2.0, 3.0]]))
    parts["compressed"] = parts["compressed"][:2]
    with pytest.raises(UserError, match="3 set bits but 2 values"):
        bitmask.bitmask_decompress(parts, "x")


# ----------------------------------------------------------------------------- tiny model


def _masked_tiny(tiny_llama, density=0.5, seed=1):
    from pruning.models import apply_masks, linear_layers

    g = torch.Generator().manual_seed(seed)
    keep = {n: (torch.rand(l.weight.shape, generator=g) < density).numpy() for n, l in linear_layers(tiny_llama).items()}
    apply_masks(tiny_llama, keep)
    return tiny_llama, keep


def _logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("fmt", export.FORMATS)
def test_round_trip_logits_equal_tiny(tiny_llama, tmp_path, fmt):
    model, _ = _masked_tiny(tiny_llama)
    ids = torch.randint(0, 256, (2, 24), generator=torch.Generator().manual_seed(0))
    ref = _logits(model, ids)
    rep = export.export_model(model, byte_tokenizer(), tmp_path / "out", fmt)
    back, tok = export.load_exported(tmp_path / "out")
    assert torch.allclose(_logits(back, ids), ref, atol=1e-6, rtol=0)
    assert export.nonzero_fraction(back) == pytest.approx(export.nonzero_fraction(model))
    assert back.lm_head.weight.data_ptr() == back.model.embed_tokens.weight.data_ptr()  # still tied
    assert len(tok) == 256
    assert rep.sparsity == pytest.approx(0.5, abs=0.02)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # the temp dir was renamed, none left
    if fmt == "compressed":
        qc = json.loads((tmp_path / "out" / "config.json").read_text())["quantization_config"]
        assert qc["quant_method"] == "compressed-tensors"
        assert qc["sparsity_config"]["format"] == "sparse-bitmask"
        assert qc["sparsity_config"]["ignore"] == ["lm_head"]


def test_compressed_is_smaller_at_half_sparsity(tiny_llama, tmp_path):
    model, _ = _masked_tiny(tiny_llama)
    hf = export.export_model(model, byte_tokenizer(), tmp_path / "hf", "hf")
    ct = export.export_model(model, byte_tokenizer(), tmp_path / "ct", "compressed")
    assert hf.bytes == pytest.approx(hf.dense_bytes, rel=0.02)  # zeros cost as much as any value
    # linears are ~80% of this model's weights: 50% of them + 1/32 bitmask overhead (fp32) -> well under 80%
    assert ct.bytes < 0.8 * ct.dense_bytes
    assert ct.dense_bytes == pytest.approx(hf.dense_bytes, rel=0.02)
    assert "% of dense" in ct.summary()


def test_out_must_be_empty_unless_overwrite(tiny_llama, tmp_path):
    model, _ = _masked_tiny(tiny_llama)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(UserError, match="not empty"):
        export.export_model(model, byte_tokenizer(), out, "hf")
    export.export_model(model, byte_tokenizer(), out, "compressed", overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "config.json").is_file()
    with pytest.raises(UserError, match="unknown export format"):
        export.export_model(model, byte_tokenizer(), tmp_path / "o2", "gguf")


def test_failed_export_leaves_nothing(tiny_llama, tmp_path, monkeypatch):
    model, _ = _masked_tiny(tiny_llama)

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(export, "_save_compressed", boom)
    with pytest.raises(RuntimeError):
        export.export_model(model, byte_tokenizer(), tmp_path / "out", "compressed")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def tiny_dir(tiny_llama, tmp_path):
    """The tiny model saved as an HF directory, plus a 50% masks file for it."""
    from besa_common.masks import write_masks

    d = tmp_path / "tiny"
    tiny_llama.save_pretrained(str(d))
    byte_tokenizer().save_pretrained(str(d))
    _, keep = _masked_tiny(tiny_llama)
    write_masks(tmp_path / "run" / "masks.safetensors", keep, {"model": str(d), "method": "random-test"})
    return d, tmp_path / "run" / "masks.safetensors", keep


def test_cli_export_and_quant_params(tiny_dir, tmp_path, capsys):
    """``besa export`` end to end; with quant.safetensors next to the masks both formats store the fake-quantized weights."""
    from besa.cli import main
    from pruning.models import load_model
    from pruning.quant import QuantSpec, apply_quant, quantize_weight, save_quant

    d, masks, keep = tiny_dir
    model, _ = load_model(str(d))
    qparams = {}
    for name, k in keep.items():
        _, p = quantize_weight(model.get_submodule(name).weight.data, torch.from_numpy(k), QuantSpec(4, 32))
        qparams.update({f"{name}.{n}": v for n, v in p.items()})
    save_quant(masks.with_name("quant.safetensors"), qparams, {"wbits": 4, "group_size": 32})

    # the reference: the in-memory masked + quantized model, as besa eval builds it
    from pruning.models import apply_masks

    ref_model, _ = load_model(str(d))
    apply_masks(ref_model, keep)
    apply_quant(ref_model, qparams, {"wbits": 4, "group_size": 32})
    ids = torch.randint(0, 256, (1, 20), generator=torch.Generator().manual_seed(3))
    ref = _logits(ref_model, ids)
    for fmt in export.FORMATS:
        assert main(["export", "--model", str(d), "--masks", str(masks), "--format", fmt, "--out", str(tmp_path / fmt)]) == 0
        line = capsys.readouterr().out
        assert "fake-quantized" in line and "vs dense" in line
        back, _ = export.load_exported(tmp_path / fmt)
        assert torch.allclose(_logits(back, ids), ref, atol=1e-6, rtol=0)
        # the generic loader (what `besa eval --model DIR` uses) must decompress too, not load random weights
        generic, _ = load_model(str(tmp_path / fmt))
        assert torch.allclose(_logits(generic, ids), ref, atol=1e-6, rtol=0)
        w = back.model.layers[0].mlp.up_proj.weight  # at most 2**4 distinct values per group of 32
        assert all(len(torch.unique(g)) <= 16 for g in w.reshape(-1, 32))
    # --no-quant: masks only
    assert main(["export", "--model", str(d), "--masks", str(masks), "--format", "hf", "--out", str(tmp_path / "nq"), "--no-quant"]) == 0
    assert "fake-quantized" not in capsys.readouterr().out


def test_cli_errors_are_one_line(tiny_dir, tmp_path, capsys):
    from besa.cli import main

    d, masks, _ = tiny_dir
    assert main(["export", "--model", str(d), "--masks", str(tmp_path / "nope.safetensors"), "--format", "hf", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "masks file not found" in err and err.count("\n") == 1
    # masks from another model (shape mismatch)
    from besa_common.masks import write_masks

    bad = tmp_path / "bad.safetensors"
    write_masks(bad, {"model.layers.0.mlp.up_proj": np.ones((3, 3), bool)}, {})
    assert main(["export", "--model", str(d), "--masks", str(bad), "--format", "compressed", "--out", str(tmp_path / "o")]) == 2
    assert "up_proj" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------- the real model


@pytest.mark.slow
def test_round_trip_smollm2_half_sparse(tmp_path):
    """SmolLM2 with 50% per-row magnitude masks: both exports reload with the same logits; compressed shrinks."""
    from pruning.models import apply_masks, linear_layers, load_model

    torch.set_num_threads(max(1, torch.get_num_threads()))
    model, tok = load_model("smollm2-135m")
    keep = {}
    for name, lin in linear_layers(model).items():
        w = lin.weight.detach().abs()  # (out, in)
        k = torch.zeros_like(w, dtype=torch.bool)
        k.scatter_(1, w.topk(w.shape[1] // 2, dim=1).indices, True)  # keep the larger half of each row
        keep[name] = k
    apply_masks(model, keep)
    ids = tok("The quick brown fox jumps over the lazy dog. Pruning removes half of the weights.", return_tensors="pt")["input_ids"]
    ref = _logits(model, ids)
    reports = {}
    for fmt in export.FORMATS:
        reports[fmt] = export.export_model(model, tok, tmp_path / fmt, fmt)
        back, _ = export.load_exported(tmp_path / fmt)
        assert torch.allclose(_logits(back, ids), ref, atol=1e-4, rtol=0), fmt
        del back
    hf, ct = reports["hf"], reports["compressed"]
    print(hf.summary())
    print(ct.summary())
    assert hf.bytes == pytest.approx(hf.dense_bytes, rel=0.01)
    # 106 M linear params at 50% (+1/32 bitmask) and the 28 M dense embedding: ~63% of dense in fp32
    assert ct.bytes < 0.7 * ct.dense_bytes
    assert ct.sparsity == pytest.approx(0.5, abs=0.01)
