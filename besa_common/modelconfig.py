"""THE typed, ranged reader of a LLaMA-family model config (HF ``config.json`` fields; GGUF metadata
is mapped onto the same names).  No torch, no weights.

Every shape field has a type (an integer, never a string, float or bool) and a range, checked
BEFORE anything is sized from it, and the whole model has a cap (:data:`MAX_MODEL_WEIGHTS`
linear weights), so ``num_hidden_layers: 1000000000`` is one line, not a machine out of memory.
Used by the simulator's model shapes (:mod:`simulator.modelcfg`: ``--synthetic config.json``,
``--model``) and by ``besa prune/eval``'s up-front model checks (:mod:`pruning.model_spec`).
"""

from __future__ import annotations

from typing import Any

from besa_common.errors import UserError
from besa_common.foreign import gguf_value

MAX_DIM = 1 << 20  # one matrix's rows or columns (LLaMA-70B's largest is 28672)
MAX_LAYERS = 4096  # transformer blocks (the largest published LLaMA-family models have ~126)
MAX_HEADS = 1 << 14
MAX_VOCAB = 1 << 24
MAX_MODEL_WEIGHTS = 1 << 42  # linear weights of the whole model (~4.4 T; LLaMA-3-405B has ~0.4 T)

# HF config.json key -> (required, lo, hi, GGUF key under "<arch>.")
FIELDS: dict[str, tuple[bool, int, int, str]] = {
    "hidden_size": (True, 1, MAX_DIM, "embedding_length"),
    "intermediate_size": (True, 1, MAX_DIM, "feed_forward_length"),
    "num_hidden_layers": (True, 1, MAX_LAYERS, "block_count"),
    "num_attention_heads": (True, 1, MAX_HEADS, "attention.head_count"),
    "num_key_value_heads": (False, 1, MAX_HEADS, "attention.head_count_kv"),
    "head_dim": (False, 1, MAX_DIM, "attention.key_length"),
    "vocab_size": (True, 1, MAX_VOCAB, "vocab_size"),
}


def _int_field(cfg: dict[str, Any], key: str, where: str) -> int | None:
    required, lo, hi, _ = FIELDS[key]
    v = cfg.get(key)
    if v is None:
        if required:
            raise UserError(f"{where}: {key} is missing (an integer in [{lo}, {hi}])")
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise UserError(f"{where}: {key} must be an integer in [{lo}, {hi}], got {v!r}"[:300])
    return v


def read_model_config(cfg: Any, where: str) -> dict[str, Any]:
    """The validated shape fields of a parsed config (``where`` names it in errors): every key of
    :data:`FIELDS` as an int (``num_key_value_heads`` defaults to the heads, ``head_dim`` to
    hidden / heads), plus ``tie_word_embeddings`` (a bool).  One-line :class:`UserError` otherwise."""
    if not isinstance(cfg, dict):
        raise UserError(f"{where}: a model config must be a JSON object")
    out: dict[str, Any] = {k: _int_field(cfg, k, where) for k in FIELDS}
    heads = out["num_attention_heads"]
    if out["num_key_value_heads"] is None:
        out["num_key_value_heads"] = heads  # HF's default: no GQA
    if heads % out["num_key_value_heads"]:
        raise UserError(f"{where}: num_key_value_heads {out['num_key_value_heads']} must divide num_attention_heads {heads}")
    if out["head_dim"] is None:
        if out["hidden_size"] % heads:
            raise UserError(f"{where}: hidden_size {out['hidden_size']} is not a multiple of num_attention_heads {heads}; give head_dim")
        out["head_dim"] = out["hidden_size"] // heads
    for key in ("num_attention_heads", "num_key_value_heads"):
        if out[key] * out["head_dim"] > MAX_DIM:
            raise UserError(f"{where}: {key} x head_dim = {out[key] * out['head_dim']} must be at most {MAX_DIM}")
    tie = cfg.get("tie_word_embeddings", False)
    if tie is None:
        tie = False
    if not isinstance(tie, bool):
        raise UserError(f"{where}: tie_word_embeddings must be true or false, got {tie!r}"[:200])
    out["tie_word_embeddings"] = tie
    h, i, q, kv = out["hidden_size"], out["intermediate_size"], heads * out["head_dim"], out["num_key_value_heads"] * out["head_dim"]
    total = out["num_hidden_layers"] * (2 * q * h + 2 * kv * h + 3 * i * h)
    if total > MAX_MODEL_WEIGHTS:
        raise UserError(f"{where}: {total} linear weights in {out['num_hidden_layers']} blocks; at most {MAX_MODEL_WEIGHTS} are supported")
    return out


def gguf_model_config(reader, arch: str) -> dict[str, Any]:
    """A GGUF file's metadata as the raw HF-named fields :func:`read_model_config` checks (values as
    stored: a wrong type is reported there, naming the HF field)."""
    cfg: dict[str, Any] = {"model_type": arch}
    for key, (_, _, _, gkey) in FIELDS.items():
        v = gguf_value(reader, f"{arch}.{gkey}")
        cfg[key] = int(v) if hasattr(v, "__index__") and not isinstance(v, bool) else v
    if cfg["vocab_size"] is None:
        tokens = gguf_value(reader, "tokenizer.ggml.tokens")
        cfg["vocab_size"] = len(tokens) if isinstance(tokens, list) else None
    cfg["tie_word_embeddings"] = not any(t.name == "output.weight" for t in reader.tensors)
    return cfg
