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
from besa_common.llama import ARCHITECTURES, PROJECTIONS  # ARCHITECTURES: the LLaMA-family model types

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


def _require(cfg: dict[str, Any], key: str, where: str) -> int:
    v = cfg.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise UserError(f"{where}: {key} must be a positive integer, got {v!r}")
    return v


def from_hf_config(cfg: dict[str, Any], name: str, where: str) -> ModelShape:
    """A :class:`ModelShape` from a parsed HF ``config.json`` (``where`` names it in errors)."""
    arch = str(cfg.get("model_type", "")).lower()
    if arch not in ARCHITECTURES:
        raise UserError(f"{where}: architecture {cfg.get('model_type')!r} is not LLaMA-family (supported: {', '.join(ARCHITECTURES)})")
    hidden = _require(cfg, "hidden_size", where)
    heads = _require(cfg, "num_attention_heads", where)
    kv = cfg.get("num_key_value_heads") or heads  # HF's default: no GQA
    head_dim = cfg.get("head_dim") or hidden // heads
    if not isinstance(kv, int) or heads % kv:
        raise UserError(f"{where}: num_key_value_heads {kv!r} must divide num_attention_heads {heads}")
    return ModelShape(
        name=name,
        architecture=arch,
        hidden=hidden,
        intermediate=_require(cfg, "intermediate_size", where),
        layers=_require(cfg, "num_hidden_layers", where),
        heads=heads,
        kv_heads=kv,
        head_dim=int(head_dim),
        vocab=_require(cfg, "vocab_size", where),
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        source=where,
    )


def _gguf_value(reader, key: str):
    field = reader.fields.get(key)
    return None if field is None else field.contents()


def from_gguf(path: Path) -> ModelShape:
    """A :class:`ModelShape` from a GGUF file's metadata (``<arch>.embedding_length`` ...); the
    tensors are not read.  Tied heads = no ``output.weight`` tensor."""
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as exc:  # the reader raises several types on damaged files
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{path} is not a readable GGUF file ({msg})") from None
    arch = str(_gguf_value(reader, "general.architecture") or "")
    if arch not in ARCHITECTURES:
        raise UserError(f"{path}: architecture {arch!r} is not LLaMA-family (supported: {', '.join(ARCHITECTURES)})")
    get = lambda k: _gguf_value(reader, f"{arch}.{k}")  # noqa: E731
    tokens = _gguf_value(reader, "tokenizer.ggml.tokens")
    vocab = get("vocab_size") or (len(tokens) if tokens is not None else None)
    heads = get("attention.head_count")
    hidden = get("embedding_length")
    cfg = {
        "model_type": arch,
        "hidden_size": hidden,
        "intermediate_size": get("feed_forward_length"),
        "num_hidden_layers": get("block_count"),
        "num_attention_heads": heads,
        "num_key_value_heads": get("attention.head_count_kv") or heads,
        "head_dim": get("attention.key_length") or (hidden // heads if hidden and heads else None),
        "vocab_size": vocab,
        "tie_word_embeddings": not any(t.name == "output.weight" for t in reader.tensors),
    }
    cfg = {k: (int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v) for k, v in cfg.items()}
    return from_hf_config(cfg, path.stem, str(path))


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
