"""Model shapes from shipped configs, config.json files, directories and GGUF metadata."""

import json
from pathlib import Path

import numpy as np
import pytest

from besa.cli import main
from besa_common.errors import UserError
from simulator import modelcfg as mc
from simulator import workload as wl

MODELS = Path(mc.__file__).parent / "models"
EXPECTED = {
    "llama-2-7b",
    "llama-2-13b",
    "llama-2-70b",
    "llama-3-8b",
    "llama-3-70b",
    "llama-3.2-1b",
    "llama-3.2-3b",
    "mistral-7b",
    "qwen2-7b",
    "smollm2-135m",
    "smollm2-360m",
    "smollm2-1.7b",
}
# (k_proj, gate_proj) weight shapes [out, in] from the models' published dimensions (hand-checked:
# kv heads x head size, intermediate size)
PUBLISHED = {
    "llama-2-7b": ((4096, 4096), (11008, 4096)),
    "llama-2-70b": ((1024, 8192), (28672, 8192)),  # GQA: 8 KV heads of 128
    "llama-3-8b": ((1024, 4096), (14336, 4096)),
    "llama-3.2-1b": ((512, 2048), (8192, 2048)),
    "llama-3.2-3b": ((1024, 3072), (8192, 3072)),
    "mistral-7b": ((1024, 4096), (14336, 4096)),
    "qwen2-7b": ((512, 3584), (18944, 3584)),  # 4 KV heads of 128
    "smollm2-135m": ((192, 576), (1536, 576)),  # 3 KV heads of 64
    "smollm2-360m": ((320, 960), (2560, 960)),
}


def test_every_listed_model_is_shipped():
    assert set(mc.shipped_names()) == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shapes_follow_the_config_numbers(name):
    cfg = json.loads((MODELS / f"{name}.json").read_text())
    s = mc.model_shape(name)
    assert (s.hidden, s.intermediate, s.layers, s.heads, s.kv_heads, s.vocab, s.tie_word_embeddings) == (
        cfg["hidden_size"],
        cfg["intermediate_size"],
        cfg["num_hidden_layers"],
        cfg["num_attention_heads"],
        cfg["num_key_value_heads"],
        cfg["vocab_size"],
        cfg["tie_word_embeddings"],
    )
    layers = wl.synthetic(f"{name}[1]:dense", 0)
    shapes = {l.proj: (l.rows, l.cols) for l in layers}
    kv = cfg["num_key_value_heads"] * cfg["head_dim"]
    assert shapes["k_proj"] == shapes["v_proj"] == (kv, cfg["hidden_size"])
    assert shapes["gate_proj"] == shapes["up_proj"] == (cfg["intermediate_size"], cfg["hidden_size"])
    assert shapes["down_proj"] == (cfg["hidden_size"], cfg["intermediate_size"])
    if name in PUBLISHED:
        assert (shapes["k_proj"], shapes["gate_proj"]) == PUBLISHED[name]


def test_old_names_still_work():
    assert mc.model_shape("llama-7b") == mc.model_shape("llama-2-7b").__class__(**{**mc.model_shape("llama-2-7b").__dict__, "name": "llama-7b"})
    assert {(l.proj, l.rows, l.cols) for l in wl.synthetic("llama-70b[1]", 0)} >= {("k_proj", 1024, 8192)}
    assert len(wl.synthetic("llama-13b", 0)) == 40 * 7


def test_config_json_directory_and_defaults(tmp_path):
    cfg = {
        "model_type": "llama",
        "hidden_size": 64,
        "intermediate_size": 160,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "vocab_size": 100,
    }  # no num_key_value_heads: HF default = no GQA
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    for spec in (str(tmp_path), str(tmp_path / "config.json")):
        s = mc.model_shape(spec)
        assert (s.kv_heads, s.head_dim, s.kv_dim, s.tie_word_embeddings) == (4, 16, 64, False)
        assert len(wl.synthetic(f"{spec}:sparsity=0.5", 0)) == 3 * 7
    gqa = {**cfg, "num_key_value_heads": 2, "head_dim": 32, "tie_word_embeddings": True}  # q_dim 128 != hidden
    (tmp_path / "gqa.json").write_text(json.dumps(gqa))
    shapes = {l.proj: (l.rows, l.cols) for l in wl.synthetic(f"{tmp_path / 'gqa.json'}[1]", 0)}
    assert shapes["q_proj"] == (128, 64) and shapes["o_proj"] == (64, 128) and shapes["k_proj"] == (64, 64)


@pytest.mark.parametrize(
    "cfg, needle",
    [
        ({"model_type": "gpt2", "n_embd": 768}, "not LLaMA-family"),
        ({"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4}, "intermediate_size"),
        (
            {
                "model_type": "llama",
                "hidden_size": 64,
                "intermediate_size": 8,
                "num_hidden_layers": 1,
                "num_attention_heads": 4,
                "num_key_value_heads": 3,
                "vocab_size": 10,
            },
            "must divide",
        ),
    ],
)
def test_bad_configs_are_one_line(tmp_path, cfg, needle):
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match=needle):
        mc.model_shape(str(tmp_path))


def test_unknown_names_and_missing_files(tmp_path):
    with pytest.raises(UserError, match="not a shipped name"):
        mc.model_shape("gpt-9")
    with pytest.raises(UserError, match="no config.json"):
        mc.model_shape(str(tmp_path))
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(UserError, match="not a readable JSON"):
        mc.model_shape(str(tmp_path / "bad.json"))


def _gguf(path, arch="llama", tied=True):
    gguf = pytest.importorskip("gguf")
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(2)
    w.add_embedding_length(64)
    w.add_feed_forward_length(96)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_token_list([f"t{i}".encode() for i in range(50)])
    w.add_tensor("token_embd.weight", np.zeros((50, 64), np.float32))
    if not tied:
        w.add_tensor("output.weight", np.zeros((50, 64), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_gguf_metadata(tmp_path):
    s = mc.model_shape(str(_gguf(tmp_path / "m.gguf")))
    assert (s.hidden, s.intermediate, s.layers, s.heads, s.kv_heads, s.head_dim, s.vocab, s.tie_word_embeddings) == (64, 96, 2, 4, 2, 16, 50, True)
    assert not mc.model_shape(str(_gguf(tmp_path / "u.gguf", tied=False))).tie_word_embeddings
    with pytest.raises(UserError, match="not LLaMA-family"):
        mc.model_shape(str(_gguf(tmp_path / "g.gguf", arch="gpt2")))
    (tmp_path / "broken.gguf").write_bytes(b"GGUF\x03")
    with pytest.raises(UserError, match="not a readable GGUF"):
        mc.model_shape(str(tmp_path / "broken.gguf"))


def _simulate(capsys, spec, tmp_path):
    code = main(["simulate", "--synthetic", spec, "--hw", "vitcod", "--mode", "cycle", "--tokens", "1", "--out", str(tmp_path)])
    return code, capsys.readouterr()


@pytest.mark.parametrize("name", sorted(EXPECTED - {"llama-2-70b", "llama-3-70b", "llama-2-13b", "qwen2-7b", "mistral-7b", "llama-3-8b", "llama-2-7b"}))
def test_simulate_every_small_shipped_config_json(capsys, tmp_path, name):
    code, (out, err) = _simulate(capsys, f"{MODELS / name}.json[2]:sparsity=0.5", tmp_path)
    assert code == 0, err
    assert "N=1:" in out


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_simulate_every_shipped_config_json_whole_model(capsys, tmp_path, name):
    code, (out, err) = _simulate(capsys, f"{MODELS / name}.json:sparsity=0.5", tmp_path)
    assert code == 0, err


def test_simulate_non_llama_config_exits_2(capsys, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    code, (out, err) = _simulate(capsys, f"{tmp_path}:sparsity=0.5", tmp_path / "o")
    assert code == 2 and "not LLaMA-family" in err and len(err.strip().splitlines()) == 1
