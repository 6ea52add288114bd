"""The rest of a decoder step beside the pruned linears: attention + KV cache per block, the LM head
and the embedding lookup — all dense (weight sparsity does not shrink them).

``decoder_rows(layers, shape, hw, tokens, context, batch, engine)`` returns the rows of
``decoder.csv`` (one per block's attention, one LM head, one embedding lookup, per token count);
:func:`add_end_to_end` adds the end-to-end totals to ``summary.json``.  Token counts are tokens in
flight (``batch`` sequences x new tokens each); ``context`` = positions already in each sequence's KV
cache.  Shapes (heads x head_dim, KV heads, vocabulary, tied head) come from
:func:`simulator.modelcfg.model_shape`, so GQA models move fewer KV bytes.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from besa_common.errors import UserError
from besa_common.masks import read_manifest
from simulator import engine as eng
from simulator.cost.dense import attention_block, embedding_lookup
from simulator.cost.energy import energy_fj
from simulator.hardware import FJ_PER_PJ, Hardware
from simulator.modelcfg import model_shape
from simulator.schema import DECODER_COLUMNS
from simulator.workload import INT64_BUDGET, MAX_TOKENS, check_magnitudes


def check_decoder_args(context: int, batch: int, tokens: list[int]) -> None:
    """One-line errors before any slow work: ``context`` an integer in [0, MAX_TOKENS] (0 = a fresh
    prompt), ``batch`` in [1, MAX_TOKENS], every token count a multiple of ``batch``."""
    for flag, v, lo in (("--context", context, 0), ("--batch", batch, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= MAX_TOKENS:
            raise UserError(f"{flag} must be an integer in [{lo}, {MAX_TOKENS}], got {v!r}")
    for n in tokens:
        if n % batch:
            raise UserError(f"--tokens {n} is not a multiple of --batch {batch} (tokens in flight = batch x new tokens per sequence)")


def check_decoder_magnitudes(shape, hw: Hardware, tokens: list[int], context: int, batch: int, blocks: int) -> None:
    """The overflow proof of the decoder step (before the C++ core): every count of the attention
    rows, the LM head and the embedding lookup, and their sums over ``blocks`` blocks and energy,
    computed exactly with Python integers for each token count, must fit the engine's int64 (with
    headroom, :data:`simulator.workload.INT64_BUDGET`).  One line naming the flags otherwise."""
    check_decoder_args(context, batch, tokens)
    head = [SimpleNamespace(name="lm_head", rows=shape.vocab, cols=shape.hidden)]
    check_magnitudes(head, hw, tokens)
    for n in tokens:
        a = attention_block(shape.q_dim, shape.kv_dim, n // batch, context, batch, hw)
        e = embedding_lookup(shape.hidden, n, hw)
        counts = [v for v in a.values() if isinstance(v, int)] + [energy_fj(a, hw)["total"], energy_fj(e, hw)["total"], e["cycles"]]
        if max(counts) * (blocks + 2) >= INT64_BUDGET:
            raise UserError(
                f"--context {context} --batch {batch} --tokens {n} on {shape.name} ({blocks} blocks) and {hw.name!r}: the "
                f"decoder step's counts would overflow 64-bit integers; use a smaller context, batch or token count"
            )


def manifest_model(masks: str | Path | None) -> str | None:
    """The model a masks file's manifest names (``besa prune`` records it), or None; reads only the
    file's header."""
    if masks is None:
        return None
    p = Path(masks)
    manifest = read_manifest(p / "masks.safetensors" if p.is_dir() else p) or {}
    model = manifest.get("model")
    return model if isinstance(model, str) and model.strip() else None


def model_name(spec: str | None, synthetic: str | None, masks: str | Path | None = None) -> str:
    """The model of the decoder step: ``spec`` (``--model``), else the synthetic spec's model, else
    the model the masks' manifest names."""
    name = spec
    if name is None and synthetic:
        name = synthetic.split(":", 1)[0].split("[", 1)[0]
        if re.fullmatch(r"\d+x\d+(\*\d+)?", name.strip()):
            raise UserError(f"--context: the synthetic shape {name!r} is not a model; give --model NAME|config.json")
    if name is None:
        name = manifest_model(masks)
    if not name:
        raise UserError("--context needs --model NAME|config.json|DIR|.gguf for a masks workload whose manifest names no model (attention shapes, vocabulary)")
    return name


def check_model(shape, layers) -> None:
    """The workload's linears must have the model's shapes (``layers``: objects with ``name``,
    ``proj``, ``rows``, ``cols``)."""
    for lw in layers:
        want = shape.linear_shapes().get(lw.proj)
        if want is not None and (lw.rows, lw.cols) != want:
            raise UserError(f"--model {shape.name}: layer {lw.name} is {lw.rows}x{lw.cols}, the model says {want[0]}x{want[1]}")


def model_for(layers, spec: str | None, synthetic: str | None, masks: str | Path | None = None):
    """The model shape for the attention / LM head (:func:`model_name`), checked against the
    workload's q_proj / k_proj shapes."""
    shape = model_shape(model_name(spec, synthetic, masks))
    check_model(shape, layers)
    return shape


def _row(layer: str, kind: str, block: int, n: int, context: int, batch: int, r: dict, hw: Hardware) -> dict:
    e = energy_fj(r, hw)["total"]
    return {
        "layer": layer,
        "kind": kind,
        "block": block,
        "tokens": n,
        "context": context,
        "batch": batch,
        "cycles": r["cycles"],
        "compute_cycles": r["compute_cycles"],
        "memory_cycles": r["memory_cycles"],
        "stall_cycles": r["stall_cycles"],
        "bound": r["bound"],
        "bytes_kv": -(-r.get("bits_kv", 0) // 8),
        "bytes_weights": -(-r["bits_weights"] // 8),
        "bytes_act": -(-r["bits_act"] // 8),
        "bytes_out": -(-r["bits_out"] // 8),
        "macs": r["macs"],
        "energy_pj": e / FJ_PER_PJ,
        "time_us": r["cycles"] / hw.freq_mhz,
    }


def decoder_rows(layers, shape, hw: Hardware, tokens: list[int], context: int, batch: int, engine: str) -> pd.DataFrame:
    """Attention per block present in ``layers`` (blocks with a q_proj), the LM head and the embedding
    lookup, at each token count (tokens in flight = batch x new tokens per sequence)."""
    blocks = sorted({lw.block for lw in layers if lw.proj == "q_proj"})
    if not blocks:
        raise UserError("--context needs a transformer workload (layers named model.layers.N.self_attn.q_proj ...)")
    engine = engine or eng.default_engine()
    check_decoder_magnitudes(shape, hw, tokens, context, batch, len(blocks))
    rows = []
    for n in tokens:
        per_seq = n // batch
        a = eng.attention(shape.q_dim, shape.kv_dim, per_seq, context, batch, hw, engine)
        rows += [_row(f"model.layers.{b}.self_attn.attention", "attention", b, n, context, batch, a, hw) for b in blocks]
        head = eng.evaluate_dense(shape.vocab, shape.hidden, n, hw, engine)
        rows.append(_row("lm_head", "lm_head", -1, n, context, batch, head, hw))
        rows.append(_row("model.embed_tokens", "embedding", -1, n, context, batch, embedding_lookup(shape.hidden, n, hw), hw))
    return pd.DataFrame(rows, columns=list(DECODER_COLUMNS))


def add_end_to_end(summary: dict, dec: pd.DataFrame, hw: Hardware) -> None:
    """End-to-end per token count: linears (sparse or dense) + the dense rest of the decoder."""
    for key, t in summary["totals"].items():
        part = dec[dec["tokens"] == int(key)]
        rest = int(part["cycles"].sum())
        e2e, e2e_dense = t["cycles"] + rest, t["dense_cycles"] + rest
        t.update(
            decoder_rest_cycles=rest,
            attention_cycles=int(part[part.kind == "attention"]["cycles"].sum()),
            e2e_cycles=e2e,
            e2e_dense_cycles=e2e_dense,
            e2e_speedup_vs_dense=e2e_dense / e2e if e2e else None,
            e2e_time_ms=e2e / hw.freq_mhz / 1000.0,
            e2e_cycles_per_token=e2e / int(key),
            e2e_us_per_token=e2e / hw.freq_mhz / int(key),
        )
        if "energy_uj" in t:
            rest_e = float(part["energy_pj"].sum()) / 1e6
            t.update(e2e_energy_uj=t["energy_uj"] + rest_e, e2e_energy_vs_dense=(t["dense_energy_uj"] + rest_e) / (t["energy_uj"] + rest_e))
