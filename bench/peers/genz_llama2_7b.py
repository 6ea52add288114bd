"""GenZ (`genz-llm` on PyPI) on LLaMA-2-7B, batch 1, fp16: decode one token at 2K context and a 2K-token
prefill, on an ideal H100 SXM and A100 SXM 80 GB (bench/peers/machines.py).  Writes
tests/simulator/golden/peers/genz.json.

Run with GenZ's own venv (never a project dependency):

    python3.11 -m venv $PEERS/genz && $PEERS/genz/bin/pip install genz-llm==0.0.16
    $PEERS/genz/bin/python bench/peers/genz_llama2_7b.py

Settings that matter (each is recorded in the JSON):
* GenZ reads `Memory_BW` in GiB/s (GenZ.unit: binary prefixes for bandwidth and memory, decimal for FLOPS and
  time), so 3.35e12 B/s is passed as 3.35e12 / 2**30 = 3119.9.  Passing "3350" would be 7.4 % faster memory.
* `Flops` is TFLOPS (1e12 FLOP/s, 2 FLOPs per MAC); bits = "bf16" (2 bytes, compute multiplier 1 = the fp16 rate).
* decode_moddeling defaults to beam size Bb = 4: set to 1 for batch 1.  Decode with input_tokens = 2048,
  output_tokens = 1 attends to 2048 cached positions ("Logit Pre") plus the new token itself ("Logit Suf").
* system_eff = 1 (compute_efficiency = memory_efficiency = 1): an ideal roofline per operator,
  time = max(FLOPs / Flops, bytes / Memory_BW).
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machines import BATCH, DECODE_CONTEXT, GPUS, PREFILL_TOKENS  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "simulator" / "golden" / "peers" / "genz.json"
GENZ_MODEL = "llama2_7b"


def _ops(df, unit_time_to_s: float) -> tuple[list[dict], dict]:
    """Per-operator rows (repeat blocks expanded by their count) and the totals."""
    rows, totals = [], {"flops": 0.0, "bytes": 0.0, "compute_s": 0.0, "memory_s": 0.0, "latency_s": 0.0}
    repeat = 1
    for _, r in df.iterrows():
        if r["Op Type"] == "Repeat":
            repeat = int(r["Dimension"])
            continue
        if r["Op Type"] == "EndRepeat":
            repeat = 1
            continue
        row = {
            "name": r["Layer Name"],
            "op_type": r["Op Type"],
            "dimension": str(r["Dimension"]),
            "count": repeat,
            "bound": r["Bound"],
            "flops": float(r["Num ops (MFLOP)"]) * 1e6,
            "bytes": float(r["Total Data (MB)"]) * 2**20,
            "bytes_a": float(r["Input_a (MB)"]) * 2**20,
            "bytes_w": float(r["Input_w (MB)"]) * 2**20,
            "bytes_out": float(r["Output (MB)"]) * 2**20,
            "compute_s": float(r["Compute time (msec)"]) * unit_time_to_s,
            "memory_s": float(r["Memory time (msec)"]) * unit_time_to_s,
            "latency_s": float(r["Latency (msec)"]) * unit_time_to_s,
        }
        rows.append(row)
        for k in totals:
            totals[k] += row[k] * repeat
    return rows, totals


def run() -> dict:
    warnings.filterwarnings("ignore")
    from GenZ import decode_moddeling, prefill_moddeling

    out = {
        "tool": "genz-llm",
        "version": version("genz-llm"),
        "command": "$PEERS/genz/bin/python bench/peers/genz_llama2_7b.py",
        "model": GENZ_MODEL,
        "batch": BATCH,
        "bits": "bf16 (2 bytes; GenZ's fp16-class setting)",
        "system_eff": 1,
        "counts": [
            "every op is an ideal roofline: time = max(FLOPs / Flops, bytes / Memory_BW), summed over ops (no overlap between ops)",
            "prefill: input embedding modelled as a dense one-hot GEMM (2 x S x 4096 x 32000 FLOPs, the 32000 x 4096 table read)",
            "prefill: lm_head ('classifier') on all S tokens; attention logits/attend on the full S x S (not causal)",
            "prefill: K and V are written as part of the QKV GEMM output (no separate KV-cache write)",
            "decode: no input embedding; lm_head on the one token; attention reads 2048 cached K and V per layer ('Pre') plus the new token ('Suf')",
            "norms, rotary embeddings, softmax and residual adds are not counted",
        ],
        "results": {},
    }
    for gpu, g in GPUS.items():
        sysd = {
            "Flops": g["flops"] / 1e12,
            "Memory_size": g["mem_gb"],
            "Memory_BW": g["mem_bytes_per_s"] / 2**30,
            "ICN": 450,
            "real_values": True,
        }
        res = {"system": sysd}
        dec = decode_moddeling(
            model=GENZ_MODEL, batch_size=BATCH, input_tokens=DECODE_CONTEXT, output_tokens=1, Bb=1, system_name=dict(sysd), system_eff=1, bits="bf16"
        )
        pre = prefill_moddeling(model=GENZ_MODEL, batch_size=BATCH, input_tokens=PREFILL_TOKENS, system_name=dict(sysd), system_eff=1, bits="bf16")
        for phase, o, args in (
            ("decode", dec, {"input_tokens": DECODE_CONTEXT, "output_tokens": 1, "Bb": 1}),
            ("prefill", pre, {"input_tokens": PREFILL_TOKENS}),
        ):
            ops, tot = _ops(o["model_df"], 1e-3)
            res[phase] = {
                "call_args": args,
                "latency_ms": float(o["Latency"]),
                "linear_ms": float(o["summary_table"]["Linear Latency (msec)"].values[0]),
                "attn_ms": float(o["summary_table"]["Attn Latency (msec)"].values[0]),
                "sum_compute_ms": tot["compute_s"] * 1e3,
                "sum_memory_ms": tot["memory_s"] * 1e3,
                "sum_op_latency_ms": tot["latency_s"] * 1e3,
                "flops": tot["flops"],
                "bytes": tot["bytes"],
                "ops": ops,
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
        for ph in ("decode", "prefill"):
            p = r[ph]
            print(
                f"GenZ {gpu:14s} {ph:7s} {p['latency_ms']:9.4f} ms  (compute {p['sum_compute_ms']:.4f}, memory {p['sum_memory_ms']:.4f} ms; {p['flops'] / 1e9:.2f} GFLOP, {p['bytes'] / 1e9:.4f} GB)"
            )


if __name__ == "__main__":
    main()
