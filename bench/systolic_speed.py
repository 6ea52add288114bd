"""Speed of simulator/cost/systolic.py against the real SCALE-Sim v3 on the same LLaMA-7B layer (goal >= 1000x).

    .venv/bin/python bench/systolic_speed.py

SCALE-Sim's times are the ones bench/scalesim_golden.py recorded (tests/simulator/golden/scalesim/walltime.csv:
wall and CPU seconds of one run, with `uptime` at the time); this script times the closed form here, on the
same layer, checks it gives SCALE-Sim's cycles, and prints both with the ratio and the current `uptime`.
The machine is shared: compare the CPU-time ratio when the load differs between the two measurements.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from simulator import engine as eng  # noqa: E402
from simulator.cost.systolic import systolic_layer  # noqa: E402
from simulator.hardware import load_hardware  # noqa: E402
from simulator.stats import MaskStats  # noqa: E402

WALLTIME = ROOT / "tests" / "simulator" / "golden" / "scalesim" / "walltime.csv"


def time_call(args: tuple, repeats: int = 20000) -> float:
    """Median over 5 batches of seconds per call (wall clock)."""
    per = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(repeats):
            systolic_layer(*args)
        per.append((time.perf_counter() - t0) / repeats)
    return sorted(per)[2]


def time_mode(r: dict, repeats: int = 5) -> tuple[float, int]:
    """Seconds of one ``--mode systolic`` layer through the engine, its mask statistic (the n:m group
    maximum of a fresh 2:4 mask of the layer's shape) included; median of ``repeats``; and its cycles."""
    N, K, M = int(r["N"]), int(r["K"]), int(r["M"])
    packed = np.packbits(np.broadcast_to((np.arange(K) % 4) < 2, (N, K)), axis=1, bitorder="little")
    hw = load_hardware("systolic-64x64", {"array_rows": r["array_rows"], "array_cols": r["array_cols"], "dataflow": r["dataflow"]})
    per, cycles = [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        (res,) = eng.evaluate_stats(MaskStats(N, K, packed=packed), "systolic", [M], hw, eng.default_engine())
        per.append(time.perf_counter() - t0)
        cycles = res["dense_cycles"]
    return sorted(per)[repeats // 2], cycles


def main() -> None:
    with open(WALLTIME) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit(f"no SCALE-Sim timings in {WALLTIME}: run bench/scalesim_golden.py --only llama7b in the SCALE-Sim venv")
    print(f"uptime now: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    for r in rows:
        args = (int(r["array_rows"]), int(r["array_cols"]), r["dataflow"], int(r["M"]), int(r["N"]), int(r["K"]))
        res = systolic_layer(*args)
        if res.cycles != int(r["total_cycles"]):
            sys.exit(f"{r['case']}: closed form {res.cycles} cycles, SCALE-Sim {r['total_cycles']}")
        t = time_call(args)
        wall, cpu = float(r["scalesim_wall_s"]), float(r["scalesim_cpu_s"] or "nan")
        print(
            f"{r['case']}: {r['array_rows']}x{r['array_cols']} {r['dataflow']}, M={r['M']} N={r['N']} K={r['K']}: {res.cycles:,} cycles (equal)\n"
            f"  SCALE-Sim {wall:.1f} s wall, {cpu:.1f} s CPU   [{r['uptime']}]\n"
            f"  closed form {t * 1e6:.2f} us/call -> {wall / t:,.0f}x SCALE-Sim's wall time, {cpu / t:,.0f}x its CPU time (goal >= 1000x)"
        )
        tm, dense = time_mode(r)
        if dense != res.cycles:
            sys.exit(f"{r['case']}: --mode systolic dense baseline {dense} cycles, SCALE-Sim {r['total_cycles']}")
        print(f"  --mode systolic on a 2:4 mask of that shape (mask statistics included) {tm * 1e3:.2f} ms -> {wall / tm:,.0f}x SCALE-Sim's wall time")


if __name__ == "__main__":
    main()
