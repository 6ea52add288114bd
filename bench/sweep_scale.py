"""How a what-if sweep scales with Dask workers: wall time with 1 worker vs 2 workers, and the ratio.

    python bench/sweep_scale.py [--points-from configs/sweeps/whatif-llama7b.toml] [--limit 48]

Runs the first ``--limit`` points of the sweep file (default: the shipped LLaMA-7B what-if grid)
on a LocalCluster of 1 and then 2 single-threaded worker processes, and prints the wall times and
t1 / t2.  Each worker first builds the workload (a LLaMA-7B mask set, once per worker, in
parallel; printed as "warm-up") and the clock then times the points alone: the steady-state
scaling of the sweep.  On a 2-core machine the ideal ratio is 2.0.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points-from", default=str(ROOT / "configs" / "sweeps" / "whatif-llama7b.toml"))
    ap.add_argument("--limit", type=int, default=48, help="points to run (the first N of the grid)")
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts to compare")
    args = ap.parse_args()

    from distributed import Client, LocalCluster, as_completed

    from simulator.sweep import _build_workload, _chunks, expand, load_sweep, run_points

    spec = load_sweep(args.points_from)
    points = expand(spec)[: args.limit]
    print(f"{len(points)} points of {args.points_from} (workload {points[0].workload.name}, tokens {sorted({p.tokens for p in points})})")
    times = {}
    for n in [int(x) for x in args.workers.split(",")]:
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40) as cluster, Client(cluster) as client:
            client.wait_for_workers(n)
            t0 = time.perf_counter()
            client.run(_build_workload, points[0])  # every worker builds (and caches) the workload
            warm = time.perf_counter() - t0
            t0 = time.perf_counter()
            futs = [client.submit(run_points, c, pure=False) for c in _chunks(points, n * 8)]
            rows = [r for f in as_completed(futs) for r in f.result()]
            times[n] = time.perf_counter() - t0
        bad = [r for r in rows if r["status"] != "ok"]
        print(f"{n} worker(s): {times[n]:.1f} s for {len(rows)} points (warm-up {warm:.1f} s; {len(bad)} failed{': ' + bad[0]['error'] if bad else ''})", flush=True)
    if 1 in times and 2 in times:
        print(f"ratio t(1 worker) / t(2 workers) = {times[1] / times[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
