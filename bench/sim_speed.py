"""Simulator speed: seconds per 4096x4096 layer in each mode, where a whole LLaMA-7B-shaped cycle
simulation spends its time (phase by phase), the mask statistics against a plain popcount, the
whole ``besa simulate`` command, the partition search on the slow cases (gpu-h100's 528 lines,
skewed masks with many candidates) against evaluating every candidate, statistics reused across
machines, and the C++ engine against the Python reference.

    python bench/sim_speed.py            # ~1 minute on a 2-core CPU (idle)
    python bench/sim_speed.py --quick    # skip the per-mode layer table and the reference line

Targets (issue 9, item 7): the whole command ``besa simulate --synthetic llama-7b:sparsity=0.5 --hw
vitcod --mode cycle --tokens 1,2048`` (mask generation included) <= 2 s on the 2-core machine, idle;
the mask statistics within 3x of a popcount over the packed masks.  Times are best of --repeat;
ratios are taken in one process, so they mean something under load too (the last line is uptime).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from simulator import cpp, stats
from simulator import engine as eng
from simulator import workload as wl
from simulator.hardware import GATHER_SCALE, load_hardware
from simulator.run import simulate, summarize, workload_stats, write_results


def best_of(fn, repeat=1):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def layer_table(engine: str) -> None:
    vitcod, besa = load_hardware("vitcod"), load_hardware("besa")
    layers = wl.synthetic("4096x4096*3:sparsity=0.5", 0)
    print("seconds per 4096x4096 layer (50% unstructured, incl. mask generation; best of 2 runs of 3 layers):")
    for mode, hw, tokens in [
        ("besa-compat", besa, [1]),
        ("corrected", besa, [1]),
        ("cycle", vitcod, [1]),
        ("cycle", vitcod, [2048]),
        ("dense", vitcod, [2048]),
        ("nm", vitcod, [2048]),
    ]:
        t = best_of(lambda hw=hw, mode=mode, tokens=tokens: simulate(layers, hw, mode, tokens, engine=engine), 2) / len(layers)
        print(f"  {mode:12s} N={tokens[0]:<5d} {t:.4f} s")


def phases(spec: str, hw, engine: str) -> None:
    """The whole-model cycle simulation split into its phases, one layer at a time as the CLI does
    (each mask dropped after its layer: holding all of them would time fresh memory, not the work)."""
    model = wl.synthetic(spec, 0)
    t_gen = t_stats = t_search = 0.0
    for layer in model:
        t = time.perf_counter()
        p = layer.load()
        t_gen += time.perf_counter() - t
        t = time.perf_counter()
        st = stats.MaskStats(layer.rows, layer.cols, packed=p)
        t_stats += time.perf_counter() - t
        t = time.perf_counter()
        eng.evaluate_stats(st, "cycle", [1, 2048], hw, engine)
        t_search += time.perf_counter() - t
    t = time.perf_counter()
    df = simulate(model, hw, "cycle", [1, 2048], engine=engine)
    t_sim = time.perf_counter() - t
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        write_results(os.path.join(d, "o"), df, summarize(df, hw))
    t_write = time.perf_counter() - t
    print(f"whole model {spec} ({len(model)} matrices), cycle mode on {hw.name}, N = 1 and 2048, phase by phase:")
    print(
        f"  mask generation {t_gen:.2f} s | statistics (column + row counts) {t_stats:.2f} s | partition search incl. "
        f"its lazy statistics {t_search:.2f} s | the layers table ~{max(0.0, t_sim - t_gen - t_stats - t_search):.2f} s | "
        f"summary + writing {t_write:.2f} s"
    )
    print(f"  simulate() (all of it but the writing): {t_sim:.2f} s")
    for n in (1, 2048):
        part = df[df["tokens"] == n]
        print(
            f"  N={n:<5d} speedup vs dense {part['dense_cycles'].sum() / part['cycles'].sum():.3f}x, "
            f"{(part['bound'] == 'memory').sum()}/{len(part)} layers memory-bound"
        )


def statistics_vs_popcount(spec: str, hw, engine: str, repeat: int) -> None:
    model = wl.synthetic(spec, 0)
    packed = [layer.load() for layer in model]  # held: every timed function reads the same memory

    def popcount():
        return sum(int(np.bitwise_count(p.reshape(-1).view(np.uint64) if p.nbytes % 8 == 0 else p).sum()) for p in packed)

    def eager():
        return [stats.MaskStats(l.rows, l.cols, packed=p) for l, p in zip(model, packed)]

    def computed():
        # what the cycle simulation computes from the masks: the counts, plus the lazy statistics its
        # search asked for (= the first search minus the same search with them memoised)
        total = 0.0
        for l, p in zip(model, packed):
            t0 = time.perf_counter()
            st = stats.MaskStats(l.rows, l.cols, packed=p)
            t1 = time.perf_counter()
            eng.evaluate_stats(st, "cycle", [1, 2048], hw, engine)
            t2 = time.perf_counter()
            eng.evaluate_stats(st, "cycle", [1, 2048], hw, engine)
            total += (t1 - t0) + (t2 - t1) - (time.perf_counter() - t2)
        return total

    def everything():  # what the search could ask for: every partition candidate of hw
        return [stats.MaskStats(l.rows, l.cols, packed=p).prepare(hw) for l, p in zip(model, packed)]

    t_pop, t_eager, t_all = best_of(popcount, repeat), best_of(eager, repeat), best_of(everything, repeat)
    t_sim = min(computed() for _ in range(repeat))
    cands = sum(len(s.candidates(hw)) for s in everything())
    print(f"mask statistics of {spec} (best of {repeat}), against a popcount over the packed masks {t_pop:.3f} s:")
    print(f"  column + row counts (one pass, what every mode reads): {t_eager:.3f} s = {t_eager / t_pop:.1f}x popcount")
    print(f"  what the cycle simulation on {hw.name} computes (counts + the statistics its search asked for): {t_sim:.3f} s = {t_sim / t_pop:.1f}x popcount")
    print(f"  every statistic of all {cands} partition candidates on {hw.name} (a sweep's prepare): {t_all:.3f} s = {t_all / t_pop:.1f}x popcount")


def whole_command(spec: str, hw: str, repeat: int) -> None:
    cmd = ["besa", "simulate", "--synthetic", spec, "--hw", hw, "--mode", "cycle", "--tokens", "1,2048"]
    times = []
    with tempfile.TemporaryDirectory() as d:
        for _ in range(repeat):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", *cmd, "--out", os.path.join(d, "o")], check=True, capture_output=True)
            times.append(time.perf_counter() - t)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import besa.commands.simulate, simulator.run, simulator.engine, simulator.workload"], check=True)
        t_imp = time.perf_counter() - t
    print(f"`{' '.join(cmd)}`: {min(times):.2f} s best of {repeat} ({', '.join(f'{x:.2f}' for x in times)}); the imports alone {t_imp:.2f} s")


def _pruned_search(sts, hw, tokens, engine):
    for st in sts:
        eng.evaluate_stats(st, "cycle", tokens, hw, engine)


def _every_candidate(sts, hw, tokens):
    for st in sts:
        for n in tokens:
            for _threshold, dense in st.candidates(hw):
                gs = hw.gather_scaled or st.gather(dense, hw.macs_per_line, hw.banks, GATHER_SCALE)
                pads = st.pads(dense, hw.rle_bits) if hw.index_format == "rle" else 0
                cpp.core.cycle_partition(st.rows, st.cols, n, int(dense.sum()), st.row_sparse(dense), pads, gs, cpp.hw_params(hw))


def partition_search(engine: str, repeat: int) -> None:
    """The pruned partition search against evaluating every candidate (no bound) in the same process."""
    print("partition search (statistics computed first, not timed), pruned vs every candidate evaluated:")
    for spec, name in [("llama-7b[2]:sparsity=0.5", "gpu-h100"), ("llama-7b[2]:skewed=0.5/1.0", "vitcod"), ("llama-7b[2]:skewed=0.5", "gpu-h100")]:
        hw = load_hardware(name)
        sts = workload_stats(wl.synthetic(spec, 0), prepare_for=[hw])
        tokens = [1, 2048]
        cands = sum(len(st.candidates(hw)) for st in sts)
        t_p = best_of(lambda sts=sts, hw=hw, tokens=tokens: _pruned_search(sts, hw, tokens, engine), repeat)
        t_e = best_of(lambda sts=sts, hw=hw, tokens=tokens: _every_candidate(sts, hw, tokens), 1)
        print(f"  {spec} on {name} ({len(sts)} matrices, {cands} candidates, N = 1 and 2048): {t_p:.3f} s vs {t_e:.3f} s every candidate = {t_e / t_p:.1f}x")


def reuse_across_machines(repeat: int) -> None:
    model = wl.synthetic("llama-7b[2]:sparsity=0.5", 0)
    machines = [load_hardware(n) for n in ("vitcod", "vitcod-fp16", "hbm-4k", "gpu-h100")]

    def fresh():
        for hw in machines:
            simulate(model, hw, "cycle", [1, 2048])

    def reused():
        sts = workload_stats(model, prepare_for=machines)
        for hw in machines:
            simulate(model, hw, "cycle", [1, 2048], stats=sts)

    t_f, t_r = best_of(fresh, repeat), best_of(reused, repeat)
    print(
        f"4 machines x llama-7b[2] (14 matrices), cycle N = 1 and 2048: {t_f:.2f} s regenerating the masks per machine vs "
        f"{t_r:.2f} s with run.workload_stats computed once = {t_f / t_r:.1f}x"
    )


def reference_line(engine: str) -> None:
    small = wl.synthetic("512x512*2:skewed=0.5", 0)
    hw = load_hardware("vitcod")
    t_ref = best_of(lambda: simulate(small, hw, "cycle", [64], engine="reference"))
    t_fast = best_of(lambda: simulate(small, hw, "cycle", [64], engine=engine), 3)
    print(f"Python reference vs {engine} on 2 x 512x512 (skewed 50%), cycle mode N=64: {t_ref:.3f} s vs {t_fast:.4f} s = {t_ref / t_fast:.0f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="llama-7b:sparsity=0.5", help="whole-model synthetic spec")
    ap.add_argument("--hw", default="vitcod")
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs for the timed lines (default 3)")
    ap.add_argument("--quick", action="store_true", help="skip the per-mode layer table and the reference line")
    args = ap.parse_args()
    engine = eng.default_engine()
    print(f"engine: {engine}")
    hw = load_hardware(args.hw)
    whole_command(args.model, args.hw, args.repeat)
    if not args.quick:
        layer_table(engine)
    phases(args.model, hw, engine)
    statistics_vs_popcount(args.model, hw, engine, args.repeat)
    if engine == "cpp":
        partition_search(engine, args.repeat)
    reuse_across_machines(args.repeat)
    if not args.quick:
        reference_line(engine)
    print("uptime:", os.popen("uptime").read().strip())


if __name__ == "__main__":
    main()
