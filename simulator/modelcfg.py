"""Model shapes from a config: a shipped name, a Hugging Face ``config.json`` (or a directory holding
one), or a ``.gguf`` file's metadata.  No weights are read; never imports torch.

:func:`model_shape` is THE one place the simulator learns a model's dimensions: the synthetic
workloads (``--synthetic CONFIG:PATTERN``) take their weight shapes from it, and an attention /
KV-cache model should take heads, KV heads, head size, vocabulary and layer count from it too.

Shipped configs (``simulator/models/*.json``, package data, the shape fields of each model's
published ``config.json``): :data:`SHIPPED` lists them, :data:`ALIASES` keeps the old names
(``llama-7b`` ... ) working.

Only LLaMA-family decoders (the seven linears q/k/v/o/gate/up/down per block) are accepted:
:data:`ARCHITECTURES` (HF ``model_type`` / GGUF ``general.architecture``).  GQA (``num_key_value_heads``),
``head_dim``, ``intermediate_size`` and tied heads are read from the config, never assumed.
"""

from __future__ import annotations

import importlib.resources
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from besa_common.errors import UserError
from besa_common.foreign import gguf_value, open_gguf
from besa_common.llama import ARCHITECTURES, PROJECTIONS  # ARCHITECTURES: the LLaMA-family model types
from besa_common.modelconfig import gguf_model_config, read_model_config

# old names of the four hard-coded shapes -> shipped configs with identical shapes
ALIASES = {"llama-7b": "llama-2-7b", "llama-13b": "llama-2-13b", "llama-70b": "llama-2-70b"}


@dataclass(frozen=True)
class ModelShape:
    """The dimensions of a LLaMA-family decoder (all counts; sizes in elements).

    ``head_dim`` is the per-head size (``hidden / heads`` unless the config says otherwise);
    ``q_dim = heads * head_dim`` and ``kv_dim = kv_heads * head_dim`` (GQA: kv_heads < heads).
    ``tie_word_embeddings``: the LM head shares the embedding matrix (not one of the pruned linears
    either way; it matters to a model of the LM head's traffic).
    """

    name: str
    architecture: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tie_word_embeddings: bool
    source: str = ""

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """projection -> weight shape ``(out, in)`` of one block, in :data:`PROJECTIONS` order."""
        h, q, kv, i = self.hidden, self.q_dim, self.kv_dim, self.intermediate
        shapes = {"q_proj": (q, h), "k_proj": (kv, h), "v_proj": (kv, h), "o_proj": (h, q), "gate_proj": (i, h), "up_proj": (i, h), "down_proj": (h, i)}
        return {p: shapes[p] for p in PROJECTIONS}


def shipped_names() -> list[str]:
    """Names of the shipped configs (file stems of ``simulator/models/*.json``), sorted."""
    root = importlib.resources.files("simulator") / "models"
    return sorted(p.name[: -len(".json")] for p in root.iterdir() if p.name.endswith(".json"))


def from_hf_config(cfg: dict[str, Any], name: str, where: str) -> ModelShape:
    """A :class:`ModelShape` from a parsed HF ``config.json`` (``where`` names it in errors); every
    field typed and ranged by :func:`besa_common.modelconfig.read_model_config`."""
    arch = str(cfg.get("model_type", "")).lower() if isinstance(cfg, dict) else ""
    if arch not in ARCHITECTURES:
        got = cfg.get("model_type") if isinstance(cfg, dict) else None
        raise UserError(f"{where}: architecture {got!r} is not LLaMA-family (supported: {', '.join(ARCHITECTURES)})")
    c = read_model_config(cfg, where)
    return ModelShape(
        name=name,
        architecture=arch,
        hidden=c["hidden_size"],
        intermediate=c["intermediate_size"],
        layers=c["num_hidden_layers"],
        heads=c["num_attention_heads"],
        kv_heads=c["num_key_value_heads"],
        head_dim=c["head_dim"],
        vocab=c["vocab_size"],
        tie_word_embeddings=c["tie_word_embeddings"],
        source=where,
    )


def from_gguf(path: Path) -> ModelShape:
    """A :class:`ModelShape` from a GGUF file's metadata (``<arch>.embedding_length`` ...); the
    tensors are not read.  Tied heads = no ``output.weight`` tensor."""
    reader = open_gguf(path)
    arch = str(gguf_value(reader, "general.architecture") or "")
    if arch not in ARCHITECTURES:
        raise UserError(f"{path}: architecture {arch!r} is not LLaMA-family (supported: {', '.join(ARCHITECTURES)})")
    return from_hf_config(gguf_model_config(reader, arch), path.stem, str(path))


def model_shape(spec: str) -> ModelShape:
    """The shape of ``spec``: a shipped name (:func:`shipped_names`, or an alias in :data:`ALIASES`),
    a ``config.json`` path, a directory holding ``config.json``, or a ``.gguf`` file."""
    key = spec.strip()
    name = ALIASES.get(key.lower(), key.lower())
    if name in shipped_names():
        res = importlib.resources.files("simulator") / "models" / f"{name}.json"
        return from_hf_config(json.loads(res.read_text()), key.lower(), f"shipped config {name}")
    path = Path(key).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(f"{path}: no config.json in this directory")
        path = path / "config.json"
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return from_gguf(path)
        try:
            cfg = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise UserError(f"{path}: not a readable JSON config ({str(exc).splitlines()[0]})") from None
        if not isinstance(cfg, dict):
            raise UserError(f"{path}: expected a JSON object")
        return from_hf_config(cfg, path.parent.name if path.name == "config.json" else path.stem, str(path))
    known = ", ".join(shipped_names() + sorted(ALIASES))
    raise UserError(f"model {spec!r}: not a shipped name ({known}), a config.json, a directory holding one, or a .gguf file")
