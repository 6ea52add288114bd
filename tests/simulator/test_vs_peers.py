"""Dense LLaMA-2-7B on gpu-h100 / gpu-a100 against GenZ and llm-analysis configured identically (goldens written
by bench/peers/*.py in the peers' own venvs; bench/vs_peers.py prints the full comparison).

Every block of a dense LLaMA-2-7B costs the same, so the 32-block model is 32 x one block's linears and
attention + the LM head + the embedding: one block is simulated here (seconds), the whole model in the bench.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulator import workload as wl
from simulator.decoder import decoder_rows
from simulator.hardware import load_hardware
from simulator.modelcfg import model_shape
from simulator.run import simulate

PEERS = Path(__file__).parent / "golden" / "peers"
GENZ = json.loads((PEERS / "genz.json").read_text())["results"]
LLA = json.loads((PEERS / "llm_analysis.json").read_text())["results"]
GPUS = {"gpu-h100": "h100-sxm", "gpu-a100": "a100-sxm-80gb"}


def _ms(preset: str, tokens: int, context: int) -> float:
    hw = load_hardware(preset)
    shape = model_shape("llama-2-7b")
    one = wl.synthetic("llama-2-7b[1]:dense", 0)
    lin = int(simulate(one, hw, "dense", [tokens])["cycles"].sum())
    dec = decoder_rows(one, shape, hw, [tokens], context, 1, None)
    attn = int(dec[dec.kind == "attention"]["cycles"].sum())
    rest = int(dec[dec.kind != "attention"]["cycles"].sum())
    return (shape.layers * (lin + attn) + rest) / hw.freq_mhz / 1e3


@pytest.mark.parametrize("preset", sorted(GPUS))
def test_dense_decode_and_prefill_within_5_percent_of_genz(preset):
    g = GENZ[GPUS[preset]]
    # the peers were configured with the preset's own datasheet figures
    hw = load_hardware(preset)
    assert abs(g["system"]["Flops"] / hw.peak_tops - 1) < 1e-3
    assert abs(g["system"]["Memory_BW"] * 2**30 / 1e9 / hw.dram_gb_per_s - 1) < 1e-3  # GenZ reads GiB/s
    decode, prefill = _ms(preset, 1, 2048), _ms(preset, 2048, 1)
    assert abs(decode / g["decode"]["latency_ms"] - 1) < 0.005  # both memory-bound rooflines: the same bytes
    assert abs(prefill / g["prefill"]["latency_ms"] - 1) < 0.05
    # below GenZ: causal attention and a table-lookup embedding (GenZ: full S x S, a one-hot GEMM)
    assert prefill < g["prefill"]["latency_ms"]
    la = LLA[GPUS[preset]]["shipped"]
    assert abs(prefill / la["prefill_latency_ms"] - 1) < 0.05
    assert decode < la["decode_latency_ms"]  # llm-analysis also stores the whole KV cache back every step


def test_the_h100_slip_would_fail_this_check():
    """With 256 MACs per line (the A100's rate, the preset before issue 19) prefill is ~1.9x GenZ's."""
    hw = load_hardware("gpu-h100", {"macs_per_line": 256})
    one = wl.synthetic("llama-2-7b[1]:dense", 0)
    slow = int(simulate(one, hw, "dense", [2048])["cycles"].sum())
    fast = int(simulate(one, load_hardware("gpu-h100"), "dense", [2048])["cycles"].sum())
    assert 1.9 < slow / fast < 2.1
