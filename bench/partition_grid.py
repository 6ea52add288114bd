"""The partition search's grid family against every top-G set, on one synthetic layer (issue 20).

    python bench/partition_grid.py [SPEC] [PRESET] [N,N..]     # default 4096x4096:skewed=0.5 gpu-h100 2048

Prints, per token count, the chosen cycles / G / energy of the shipped family (PARTITION_GRID steps +
G = 0, K + the threshold sets) and of every G = 0..K (the same search with the grid made as fine as
the columns), and the seconds each took.
"""

from __future__ import annotations

import sys
import time

from simulator import fast
from simulator import workload as wl
from simulator.cost import partition
from simulator.hardware import load_hardware
from simulator.stats import MaskStats


def main() -> None:
    spec = sys.argv[1] if len(sys.argv) > 1 else "4096x4096:skewed=0.5"
    hw = load_hardware(sys.argv[2] if len(sys.argv) > 2 else "gpu-h100")
    tokens = [int(x) for x in (sys.argv[3] if len(sys.argv) > 3 else "2048").split(",")]
    layer = wl.synthetic(spec, 0)[0]
    grid = partition.PARTITION_GRID
    for n in tokens:
        for name, steps in (("grid", grid), ("every G", layer.cols)):
            partition.PARTITION_GRID = steps
            st = MaskStats(layer.rows, layer.cols, packed=layer.load())
            t = time.perf_counter()
            r = fast.search(st, n, hw, "cpp")
            print(
                f"{spec} {hw.name} N={n} {name:8s} cycles {r['cycles']} G {r['G']} energy {r['energy']['total'] / 1e9:.3f} uJ ({time.perf_counter() - t:.2f} s)"
            )
    partition.PARTITION_GRID = grid


if __name__ == "__main__":
    main()
