"""The README's simulator table: per preset, LLaMA-7B-shaped (llama-2-7b) 50% unstructured and 2:4
masks, decode (N = 1) and prefill (N = 2048), linear layers only and whole decoder step at 2K and
8K context, and energy against dense.  Equivalent to, per preset and pattern,

    besa simulate --synthetic llama-2-7b:PATTERN --hw PRESET --mode MODE --tokens 1,2048 --context 2048 --out OUT
    (and --context 8192)

where MODE = cycle for sparsity=0.5 and nm for nm=2:4 (the 2:4 engine).  Prints a Markdown table.

    python bench/sim_table.py [--presets vitcod,hbm-4k] [--blocks 32]
"""

from __future__ import annotations

import argparse
import time

from simulator import workload as wl
from simulator.decoder import add_end_to_end, decoder_rows
from simulator.hardware import load_hardware
from simulator.modelcfg import model_shape
from simulator.run import simulate, summarize


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="vitcod,vitcod-fp16,vitcod-bf16,hbm-4k,gpu-h100")
    ap.add_argument("--blocks", type=int, default=32, help="blocks of llama-2-7b to simulate (32 = all)")
    args = ap.parse_args()
    shape = model_shape("llama-2-7b")
    spec = "llama-2-7b" + (f"[{args.blocks}]" if args.blocks != 32 else "")
    print("| preset | masks | N | linear speedup | e2e 2K | e2e 8K | energy vs dense (linear) | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for preset in args.presets.split(","):
        hw = load_hardware(preset)
        for pattern, mode in (("sparsity=0.5", "cycle"), ("nm=2:4", "nm")):
            t0 = time.perf_counter()
            layers = wl.synthetic(f"{spec}:{pattern}", 0)
            df = simulate(layers, hw, mode, [1, 2048])
            e2e = {}
            for ctx in (2048, 8192):
                s = summarize(df, hw)
                add_end_to_end(s, decoder_rows(layers, shape, hw, [1, 2048], ctx, 1, None), hw)
                e2e[ctx] = s["totals"]
            dt = time.perf_counter() - t0
            for n in ("1", "2048"):
                t = e2e[2048][n]
                print(
                    f"| {preset} | {pattern} ({mode}) | {n} | {t['speedup_vs_dense']:.3f} | "
                    f"{t['e2e_speedup_vs_dense']:.3f} | {e2e[8192][n]['e2e_speedup_vs_dense']:.3f} | "
                    f"{t['energy_vs_dense']:.3f} | {dt:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
