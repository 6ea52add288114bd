"""Simulator speed: seconds per 4096x4096 layer in each mode, a whole LLaMA-7B-shaped model in cycle
mode at N = 1 and N = 2048, and the C++ engine against the Python reference on a smaller case.

    python bench/sim_speed.py            # ~1 minute on a 2-core CPU

Targets (issue 4): besa-compat <= 0.05 s per 4096^2 layer; LLaMA-7B-shaped (32 x 7, 50% unstructured)
in cycle mode <= 15 s per token count.  Times include mask generation and statistics.
"""

from __future__ import annotations

import argparse
import time

from simulator import engine as eng
from simulator import workload as wl
from simulator.hardware import load_hardware
from simulator.run import simulate


def timed(fn, repeat=1):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="llama-7b:sparsity=0.5", help="whole-model synthetic spec")
    ap.add_argument("--hw", default="vitcod")
    args = ap.parse_args()
    engine = eng.default_engine()
    print(f"engine: {engine}")
    vitcod, besa = load_hardware(args.hw), load_hardware("besa")
    layers = wl.synthetic("4096x4096*3:sparsity=0.5", 0)
    # warm numba's cache and the core
    simulate(layers[:1], besa, "besa-compat", [1], engine=engine)
    simulate(layers[:1], vitcod, "cycle", [1], engine=engine)
    print("seconds per 4096x4096 layer (50% unstructured, incl. mask generation; best of 3 layers x 2):")
    for mode, hw, tokens in [
        ("besa-compat", besa, [1]),
        ("corrected", besa, [1]),
        ("cycle", vitcod, [1]),
        ("cycle", vitcod, [2048]),
        ("dense", vitcod, [2048]),
        ("nm", vitcod, [2048]),
    ]:
        t = timed(lambda hw=hw, mode=mode, tokens=tokens: simulate(layers, hw, mode, tokens, engine=engine), repeat=2) / len(layers)
        print(f"  {mode:12s} N={tokens[0]:<5d} {t:.4f} s")
    model = wl.synthetic(args.model, 0)
    print(f"whole model {args.model} ({len(model)} matrices), cycle mode on {vitcod.name}:")
    for n in (1, 2048):
        t = time.perf_counter()
        df = simulate(model, vitcod, "cycle", [n], engine=engine)
        dt = time.perf_counter() - t
        print(
            f"  N={n:<5d} {dt:.2f} s  (speedup vs dense {df['dense_cycles'].sum() / df['cycles'].sum():.3f}x, "
            f"{(df['bound'] == 'memory').sum()}/{len(df)} layers memory-bound)"
        )
    # issue 9 item 7: the whole CLI command, and the mask statistics against a plain popcount
    import os
    import subprocess
    import sys

    import numpy as np

    from simulator import stats

    packed = [lw.load() for lw in model]
    t = time.perf_counter()
    pop = sum(int(np.bitwise_count(p.view(np.uint64) if p.shape[1] % 8 == 0 else p).sum()) for p in packed)
    t_pop = time.perf_counter() - t
    t = time.perf_counter()
    for lw, p in zip(model, packed):  # what cycle mode computes per layer: column counts + row counts
        c = stats.col_counts(p, lw.cols)
        stats.row_counts(p, c >= 0)
    t_stats = time.perf_counter() - t
    print(f"mask statistics of {args.model}: {t_stats:.2f} s vs a popcount over the packed masks {t_pop:.2f} s ({pop} kept) = {t_stats / t_pop:.1f}x")
    with __import__("tempfile").TemporaryDirectory() as d:
        cmd = [
            sys.executable,
            "-m",
            "besa",
            "simulate",
            "--synthetic",
            args.model,
            "--hw",
            args.hw,
            "--mode",
            "cycle",
            "--tokens",
            "1,2048",
            "--out",
            os.path.join(d, "o"),
        ]
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        print(
            f"`besa simulate --synthetic {args.model} --hw {args.hw} --mode cycle --tokens 1,2048`: "
            f"{time.perf_counter() - t:.2f} s (whole command, imports and mask generation included)"
        )
    print("uptime:", os.popen("uptime").read().strip())
    small = wl.synthetic("512x512*2:skewed=0.5", 0)
    hw = load_hardware(args.hw)
    t_ref = timed(lambda: simulate(small, hw, "cycle", [64], engine="reference"))
    t_fast = timed(lambda: simulate(small, hw, "cycle", [64], engine=engine), repeat=3)
    print(f"Python reference vs {engine} on 2 x 512x512 (skewed 50%), cycle mode N=64: {t_ref:.3f} s vs {t_fast:.4f} s = {t_ref / t_fast:.0f}x")


if __name__ == "__main__":
    main()
