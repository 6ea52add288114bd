"""llm-analysis (PyPI `llm-analysis`) on LLaMA-2-7B, batch 1, fp16: decode one token at 2K context and a
2K-token prefill, on an ideal H100 SXM and A100 SXM 80 GB (bench/peers/machines.py).  Writes
tests/simulator/golden/peers/llm_analysis.json.

Run with llm-analysis's own venv (never a project dependency):

    python3.11 -m venv $PEERS/llmanalysis && $PEERS/llmanalysis/bin/pip install llm-analysis==0.2.2
    $PEERS/llmanalysis/bin/python bench/peers/llm_analysis_llama2_7b.py

Settings that matter (each is recorded in the JSON):
* The GPUs are registered as new entries of `llm_analysis.config.gpu_configs` with the datasheet figures
  (`peak_fp16_TFLOPS` in 1e12 FLOP/s, `hbm_bandwidth_in_GB_per_sec` in 1e9 B/s: llm-analysis multiplies by
  10**9), flops_efficiency = hbm_memory_efficiency = 1.
* Two model configs: the tool's shipped `NousResearch_Llama-2-7b-hf` (its MLP is TWO 4096 x 16384 matrices,
  no gate: 0.75 % fewer MLP weights than LLaMA's three 4096 x 11008), and `exact_mlp`, the same with
  expansion_ratio 4.03125 (ffn 16512 = 1.5 x 11008: exactly LLaMA's MLP weight count and FLOPs; set through
  expansion_ratio because a given ffn_embed_dim must be a multiple of hidden_dim).
* infer(seq_len=2048, num_tokens_to_generate=1): "prefill" is the 2048-token forward pass; "decode" is one
  token with a KV cache of seq_len + num_tokens_to_generate = 2049 positions, whose latency adds
  kv_cache_latency = 2 x (the whole KV cache) / bandwidth ("load and store kv cache").
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machines import BATCH, DECODE_CONTEXT, GPUS, PREFILL_TOKENS  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "simulator" / "golden" / "peers" / "llm_analysis.json"

MODELS = {
    "shipped": "NousResearch_Llama-2-7b-hf",
    "exact_mlp": {
        "name": "llama-2-7b-exact-mlp",
        "num_layers": 32,
        "n_head": 32,
        "hidden_dim": 4096,
        "vocab_size": 32000,
        "max_seq_len": 4096,
        "num_key_value_heads": 32,
        "expansion_ratio": 16512 / 4096,
        "model_type": "llama",
    },
}


def run() -> dict:
    import logging

    from llm_analysis import config as la_config
    from llm_analysis.analysis import infer

    logging.disable(logging.WARNING)
    out = {
        "tool": "llm-analysis",
        "version": version("llm-analysis"),
        "command": "$PEERS/llmanalysis/bin/python bench/peers/llm_analysis_llama2_7b.py",
        "batch": BATCH,
        "dtype_name": "w16a16e16",
        "flops_efficiency": 1.0,
        "hbm_memory_efficiency": 1.0,
        "models": {k: v if isinstance(v, str) else dict(v) for k, v in MODELS.items()},
        "counts": [
            "per component (attention linears, MLP, layernorm, embeddings) time = max(compute, memory), summed",
            "MLP FLOPs are hard-coded 16 x b x s x h^2 (a 4h non-gated MLP) whatever ffn_embed_dim is; its weight bytes use ffn_embed_dim",
            "prefill attention FLOPs 4 x b x s^2 x h: the full s x s (not causal)",
            "lm_head (logits) on all s tokens in prefill (2 x b x s x h x V); input embedding: a table read, no FLOPs",
            "decode adds kv_cache_latency = 2 x the whole KV cache of s + 1 positions / bandwidth (load AND store of all of it)",
        ],
        "results": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for gpu, g in GPUS.items():
            name = f"besa-ideal-{gpu}"
            la_config.gpu_configs[name] = la_config.GPUConfig(
                name=name,
                mem_per_GPU_in_GB=g["mem_gb"],
                hbm_bandwidth_in_GB_per_sec=g["mem_bytes_per_s"] / 1e9,
                intra_node_bandwidth_in_GB_per_sec=450,
                intra_node_min_message_latency=8e-06,
                peak_fp16_TFLOPS=g["flops"] / 1e12,
            )
            res = {"gpu_config": {"peak_fp16_TFLOPS": g["flops"] / 1e12, "hbm_bandwidth_in_GB_per_sec": g["mem_bytes_per_s"] / 1e9}}
            for mkey, model in MODELS.items():
                if isinstance(model, dict):
                    path = Path(tmp) / f"{model['name']}.json"
                    path.write_text(json.dumps(model))
                    model_arg = str(path)
                else:
                    model_arg = model
                s = infer(
                    model_name=model_arg,
                    gpu_name=name,
                    dtype_name="w16a16e16",
                    batch_size_per_gpu=BATCH,
                    seq_len=PREFILL_TOKENS,
                    num_tokens_to_generate=1,
                    flops_efficiency=1.0,
                    hbm_memory_efficiency=1.0,
                    log_level="ERROR",
                )
                assert DECODE_CONTEXT == PREFILL_TOKENS  # one infer() call gives both phases
                keep = {k: (float(v) if isinstance(v, (int, float)) else v) for k, v in s.items() if isinstance(v, (int, float, str, bool))}
                res[mkey] = {
                    "prefill_latency_ms": s["prefill_latency"] * 1e3,
                    "decode_latency_ms": s["decode_latency"] * 1e3,
                    "decode_kv_cache_latency_ms": s["kv_cache_latency"] * 1e3,
                    "prefill_flops": float(s["prefill_num_flops_fwd_total"]),
                    "decode_flops": float(s["decode_num_flops_fwd_total"]),
                    "summary": keep,
                }
            out["results"][gpu] = res
    return out


def main() -> None:
    data = run()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_name(f".{OUT.name}.pid{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, OUT)
    for gpu, r in data["results"].items():
        for mkey in MODELS:
            p = r[mkey]
            print(
                f"llm-analysis {gpu:14s} {mkey:9s} prefill {p['prefill_latency_ms']:9.4f} ms, decode {p['decode_latency_ms']:8.4f} ms"
                f" (of which KV cache {p['decode_kv_cache_latency_ms']:.4f}); {p['prefill_flops'] / 1e9:.1f} / {p['decode_flops'] / 1e9:.2f} GFLOP"
            )


if __name__ == "__main__":
    main()
