"""Masks from checkpoints without torch: HF zeros (sharded, bf16, bounded memory), compressed-tensors
bitmasks, GGUF, refusals; ``besa masks extract`` and ``besa simulate --masks CHECKPOINT``."""

from __future__ import annotations

import json
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from besa.cli import main
from besa_common import extract
from besa_common.errors import UserError
from besa_common.masks import pack_keep, read_masks_packed

LINEARS = {
    "self_attn.q_proj": (32, 24),
    "self_attn.k_proj": (16, 24),
    "self_attn.v_proj": (16, 24),
    "self_attn.o_proj": (24, 32),
    "mlp.gate_proj": (40, 24),
    "mlp.up_proj": (40, 24),
    "mlp.down_proj": (24, 40),
}
CONFIG = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 24,
    "intermediate_size": 40,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 8,
    "vocab_size": 50,
}


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int], bytes]]) -> None:
    """A safetensors file from raw (dtype, shape, bytes): any dtype, bf16 included, no torch."""
    header, offset, blobs = {}, 0, []
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def _bf16(w: np.ndarray) -> bytes:
    return (w.astype(np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()


def _model(seed=0, blocks=2, scale=1):
    """keep masks and weights (zeros exactly where pruned; -0.0 in some pruned places)."""
    rng = np.random.default_rng(seed)
    keep, weights = {}, {}
    for b in range(blocks):
        for local, (r, c) in LINEARS.items():
            name = f"model.layers.{b}.{local}"
            k = rng.random((r * scale, c * scale)) < 0.5
            w = (rng.standard_normal(k.shape) + 3.0) * np.where(rng.random(k.shape) < 0.5, 1, -1)  # never ~0
            w[~k] = np.where(rng.random(int((~k).sum())) < 0.3, -0.0, 0.0)
            keep[name], weights[name] = k, w.astype(np.float32)
    return keep, weights


def _hf_dir(d: Path, weights, dtype="F32", shards=1, cfg=CONFIG):
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(cfg))
    enc = {"F32": lambda w: w.astype("<f4").tobytes(), "BF16": _bf16, "F16": lambda w: w.astype("<f2").tobytes()}[dtype]
    items = [(f"{n}.weight", (dtype, list(w.shape), enc(w))) for n, w in weights.items()]
    items.append(("model.embed_tokens.weight", ("F32", [50, 24], np.ones((50, 24), "<f4").tobytes())))
    items.append(("model.norm.weight", ("F32", [24], np.ones(24, "<f4").tobytes())))
    per = -(-len(items) // shards)
    wm = {}
    for s in range(shards):
        fname = "model.safetensors" if shards == 1 else f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = dict(items[s * per : (s + 1) * per])
        write_safetensors(d / fname, part)
        wm.update({k: fname for k in part})
    if shards > 1:
        (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": wm}))
    return d


def _same(ex, keep):
    assert set(ex.packed) == set(keep)
    for name, k in keep.items():
        assert ex.shapes[name] == k.shape
        assert np.array_equal(ex.packed[name], pack_keep(k)), name


@pytest.mark.parametrize("dtype", ["F32", "BF16", "F16"])
def test_hf_zeros_single_file(tmp_path, dtype):
    keep, weights = _model()
    ex = extract.extract_masks(_hf_dir(tmp_path / "m", weights, dtype))
    _same(ex, keep)
    assert ex.source["kind"] == "hf-zeros" and ex.source["files"] == ["model.safetensors"]


def test_sharded_checkpoint_is_read_with_bounded_memory(tmp_path, monkeypatch):
    keep, weights = _model(seed=3, scale=8)  # ~1.4 M bf16 weights over 4 shards
    d = _hf_dir(tmp_path / "m", weights, "BF16", shards=4)
    largest = max(p.stat().st_size for p in d.glob("*.safetensors"))
    monkeypatch.setattr(extract, "CHUNK_BYTES", 1 << 20)
    tracemalloc.start()
    try:
        ex = extract.extract_masks(d)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    _same(ex, keep)
    assert len(ex.source["files"]) == 4
    assert peak < 2 * largest, f"peak {peak} B vs largest shard {largest} B"
    print(f"sharded extract: peak {peak / 1e6:.2f} MB, largest shard {largest / 1e6:.2f} MB ({peak / largest:.2f}x)")


def _ct_dir(d: Path, weights, keep, fmt):
    d.mkdir(parents=True)
    cfg = {
        **CONFIG,
        "quantization_config": {
            "quant_method": "compressed-tensors",
            "format": "dense",
            "sparsity_config": {"format": fmt, "targets": ["Linear"], "ignore": ["lm_head"]},
        },
    }
    (d / "config.json").write_text(json.dumps(cfg))
    items = {}
    for name, w in weights.items():
        k = keep[name]
        items[f"{name}.shape"] = ("I64", [2, 1], np.array(w.shape, "<i8").tobytes())
        items[f"{name}.compressed"] = ("F32", [int(k.sum())], w[k].astype("<f4").tobytes())
        items[f"{name}.bitmask"] = ("U8", [k.shape[0], (k.shape[1] + 7) // 8], pack_keep(k).tobytes())
    write_safetensors(d / "model.safetensors", items)
    return d


def _keep24(rows, cols, rng):
    idx = np.argsort(rng.random((rows, cols // 4, 4)), axis=2)[:, :, :2]
    k = np.zeros((rows, cols // 4, 4), bool)
    np.put_along_axis(k, idx, True, axis=2)
    return k.reshape(rows, cols)


@pytest.mark.parametrize("fmt", ["sparse-bitmask", "sparse-24-bitmask"])
def test_compressed_tensors_bitmasks_are_read_directly(tmp_path, fmt):
    keep, weights = _model(seed=1)
    if fmt == "sparse-24-bitmask":
        rng = np.random.default_rng(2)
        keep = {n: _keep24(*k.shape, rng) for n, k in keep.items()}
    keep["model.layers.0.self_attn.q_proj"][0, :4] = True  # a kept weight whose value is 0 keeps its bit
    ex = extract.extract_masks(_ct_dir(tmp_path / "ct", weights, keep, fmt))
    _same(ex, keep)
    assert ex.source["kind"] == "compressed-tensors" and ex.source["format"] == fmt


def _permute(w, heads):  # llama.cpp's q/k row order
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _gguf_file(path: Path, weights, quant: bool = False, arch="llama"):
    gguf = pytest.importorskip("gguf")
    from gguf.quants import quantize

    names = {
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
    }
    w_ = gguf.GGUFWriter(str(path), arch)
    w_.add_block_count(2)
    w_.add_embedding_length(24)
    w_.add_feed_forward_length(40)
    w_.add_head_count(4)
    w_.add_head_count_kv(2)
    for name, w in weights.items():
        b, local = name.split(".", 3)[2], name.split(".", 3)[3]
        if local == "self_attn.q_proj":
            w = _permute(w, 4)
        elif local == "self_attn.k_proj":
            w = _permute(w, 2)
        tname = f"blk.{b}.{names[local]}.weight"
        if quant:
            q = quantize(w, gguf.GGMLQuantizationType.Q8_0)
            w_.add_tensor(tname, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w_.add_tensor(tname, w)
    w_.write_header_to_file()
    w_.write_kv_data_to_file()
    w_.write_tensors_to_file()
    w_.close()
    return path


def test_gguf_zeros_in_hf_row_order(tmp_path):
    keep, weights = _model(seed=4)
    ex = extract.extract_masks(_gguf_file(tmp_path / "m.gguf", weights))
    _same(ex, keep)  # q/k rows un-permuted back to Hugging Face order
    assert not ex.warnings and ex.source["kind"] == "gguf"


def test_gguf_quantised_warns(tmp_path):
    keep, weights = _model(seed=5)
    weights = {n: np.pad(w, ((0, 0), (0, 32 - w.shape[1] % 32 if w.shape[1] % 32 else 0))) for n, w in weights.items()}
    ex = extract.extract_masks(_gguf_file(tmp_path / "q.gguf", weights, quant=True))
    assert any("quantis" in w for w in ex.warnings) and ex.source["quantization"] == ["Q8_0"]


@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda d: (d / "pytorch_model.bin").write_bytes(b"\x80\x04"), "pickled"),
        (lambda d: write_safetensors(d / "model.safetensors", {"x.weight": ("F32", [1], b"\0" * 4)}), "no LLaMA linear weights"),
        (lambda d: (d / "config.json").write_text(json.dumps({"model_type": "gpt2"})) or _hf_dir(d, {}, cfg={"model_type": "gpt2"}), "not LLaMA-family"),
        (lambda d: None, "no masks.safetensors"),
    ],
)
def test_bad_sources_are_one_line(tmp_path, capsys, make, needle):
    d = tmp_path / "src"
    d.mkdir()
    make(d)
    with pytest.raises(UserError, match=needle):
        extract.extract_masks(d)
    assert main(["masks", "extract", str(d), "--out", str(tmp_path / "m.safetensors")]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.safetensors").exists()


def test_pickled_file_refused(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(UserError, match="pickled"):
        extract.extract_masks(tmp_path / "model.bin")


def test_cli_extract_records_source_and_simulate_reads_checkpoints(tmp_path, capsys):
    keep, weights = _model(seed=6)
    d = _hf_dir(tmp_path / "m", weights, "BF16", shards=2)
    out = tmp_path / "masks.safetensors"
    assert main(["masks", "extract", str(d), "--out", str(out)]) == 0
    assert "14 linear layers" in capsys.readouterr().out
    packed, shapes, manifest = read_masks_packed(out)
    assert manifest["source"]["kind"] == "hf-zeros" and manifest["source"]["path"] == str(d.resolve())
    assert all(np.array_equal(packed[n], pack_keep(k)) for n, k in keep.items())
    # simulate straight from the checkpoint == simulate the extracted masks file
    assert main(["simulate", "--masks", str(d), "--out", str(tmp_path / "a"), "--mode", "cycle"]) == 0
    assert main(["simulate", "--masks", str(out), "--out", str(tmp_path / "b"), "--mode", "cycle"]) == 0
    capsys.readouterr()
    a = (tmp_path / "a" / "layers.csv").read_text()
    b = (tmp_path / "b" / "layers.csv").read_text()
    strip = lambda t: [",".join(r.split(",")[:-1]) for r in t.splitlines()]  # noqa: E731  (last column: wall time)
    assert strip(a) == strip(b)
    s = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert s["source"]["checkpoint"]["kind"] == "hf-zeros"
    assert main(["simulate", "--masks", str(d)]) == 2  # no --out: results are never written into a checkpoint
    assert "--out DIR is required" in capsys.readouterr().err
