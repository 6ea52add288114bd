"""The masks file: bit-exact round trip, corruption detection, and a torch-free import."""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from besa_common.errors import UserError
from besa_common.masks import pack_keep, read_masks, read_masks_packed, unpack_keep, write_masks

ROOT = Path(__file__).resolve().parents[2]


@settings(max_examples=30, deadline=None)
@given(rows=st.integers(1, 9), cols=st.integers(1, 41), seed=st.integers(0, 2**16), density=st.floats(0.0, 1.0))
def test_pack_unpack_round_trip(rows, cols, seed, density):
    rng = np.random.default_rng(seed)
    keep = rng.random((rows, cols)) < density
    packed = pack_keep(keep)
    assert packed.dtype == np.uint8 and packed.shape == (rows, (cols + 7) // 8)
    assert np.array_equal(unpack_keep(packed, cols), keep)


def test_file_round_trip_bit_exact(tmp_path):
    rng = np.random.default_rng(0)
    keep = {
        "model.layers.0.self_attn.k_proj": rng.random((12, 37)) < 0.5,  # cols not a multiple of 8
        "model.layers.0.mlp.down_proj": rng.random((5, 64)) < 0.3,
        "model.layers.1.self_attn.q_proj": np.ones((3, 9), dtype=bool),
    }
    meta = {"model": "tiny", "method": "wanda", "target": 0.5, "pattern": None}
    written = write_masks(tmp_path / "m.safetensors", keep, meta)
    back, manifest = read_masks(tmp_path / "m.safetensors")
    assert set(back) == set(keep)
    for n in keep:
        assert back[n].dtype == bool and np.array_equal(back[n], keep[n])
    assert manifest == written and manifest["method"] == "wanda"
    assert manifest["layers"]["model.layers.0.self_attn.k_proj"]["shape"] == [12, 37]
    # Same input -> same bytes (the header is written with sorted keys).
    for i in range(5):
        write_masks(tmp_path / f"m{i}.safetensors", keep, meta)
        assert (tmp_path / f"m{i}.safetensors").read_bytes() == (tmp_path / "m.safetensors").read_bytes()
    p1, _, m1 = read_masks_packed(tmp_path / "m.safetensors")
    assert m1 == written and all(np.array_equal(p1[n], np.packbits(keep[n], axis=1, bitorder="little")) for n in keep)
    # Still a plain safetensors file for any reader.
    from safetensors.numpy import load_file

    assert set(load_file(str(tmp_path / "m.safetensors"))) == set(keep)


def test_driver_masks_round_trip_and_manifest(tmp_path):
    """A real driver output reads back to exactly the masks the model carries."""
    torch = pytest.importorskip("torch")
    from transformers import LlamaConfig, LlamaForCausalLM

    import pruning.methods  # noqa: F401
    from pruning.driver import DriverConfig, prune_model
    from pruning.methods.base import METHODS

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True
    )
    model = LlamaForCausalLM(cfg).eval()
    prune_model(model, METHODS["wanda"](), torch.randint(0, 64, (2, 8)), tmp_path, DriverConfig(sparsity=0.5, progress=False), meta={"model": "t"})
    keep, manifest = read_masks(tmp_path / "masks.safetensors")
    for name, k in keep.items():
        w = model.get_submodule(name).weight.detach().numpy()
        assert np.array_equal(w != 0, k) or not (w[~k] != 0).any()
        assert not (w[~k] != 0).any()
    assert manifest["method"] == "wanda" and manifest["target"] == 0.5


def _corrupt(path: Path, fn) -> Path:
    data = bytearray(path.read_bytes())
    fn(data)
    out = path.with_name("bad.safetensors")
    out.write_bytes(bytes(data))
    return out


def test_corrupt_files_are_user_errors(tmp_path):
    keep = {"a": np.array([[True, False, True]]), "b": np.ones((2, 8), dtype=bool)}
    p = tmp_path / "m.safetensors"
    write_masks(p, keep, {"method": "x"})
    with pytest.raises(UserError):
        read_masks(_corrupt(p, lambda d: d.__delitem__(slice(len(d) - 3, len(d)))))  # truncated
    with pytest.raises(UserError):
        read_masks(_corrupt(p, lambda d: d.__setitem__(slice(0, 8), b"\xff" * 8)))  # bad header length
    # flip one data bit in the last tensor: the density check catches it
    with pytest.raises(UserError):
        read_masks(_corrupt(p, lambda d: d.__setitem__(len(d) - 1, d[-1] ^ 0x01)))
    with pytest.raises(UserError):
        read_masks(tmp_path / "missing.safetensors")


def test_masks_module_imports_without_torch(tmp_path):
    """besa_common.masks must work where torch cannot be imported at all."""
    keep = {"model.layers.0.mlp.up_proj": np.eye(4, 12, dtype=bool)}
    write_masks(tmp_path / "m.safetensors", keep, {"method": "t"})
    code = textwrap.dedent(
        f"""
        import sys, importlib.abc
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")
                return None
        sys.meta_path.insert(0, Block())
        import besa_common.masks as m
        keep, manifest = m.read_masks({str(tmp_path / "m.safetensors")!r})
        assert keep["model.layers.0.mlp.up_proj"].sum() == 4
        assert "torch" not in sys.modules
        try:
            import torch  # noqa: F401
        except ImportError:
            print("blocked-ok")
        """
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "blocked-ok" in res.stdout
