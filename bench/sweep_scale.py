"""What a sweep costs next to the simulations it runs: per-point cost vs the bare simulator call,
1 vs 2 Dask workers, and the bookkeeping share of a huge grid of trivial points.

    python bench/sweep_scale.py [--points-from configs/sweeps/whatif-llama7b.toml] [--limit 16]
                                [--workers 1,2] [--bookkeeping 100000] [--workload-cache DIR]

1. The first ``--limit`` points of the sweep file (default: the shipped LLaMA-7B what-if grid).
   The workload is materialised once (printed as "shared workload", not in the timings below) and
   every process warmed up on it (pages faulted in, kernels loaded); then, in this process, the BARE
   simulator call (``simulator.run.simulate`` on those masks, one
   call per machine serving its token counts) is timed for every machine, and the same points are
   run by ``run_sweep`` on a warm LocalCluster of 1 and of 2 single-threaded worker processes.
   The sweep's time includes everything after the masks exist: the mask statistics (computed once
   per sweep, by the worker owning each layer slice) and every point.
   Printed: per-machine cost of the sweep / bare call (goal <= 1.2) and t(1 worker) / t(2 workers)
   (ideal 2.0 on a 2-core machine; goal >= 1.8), next to what the machine gives two processes at
   this moment: the same pure-Python loop run alone and as two processes at once (2.0 on an idle
   2-core machine; ~1.0 when other jobs keep both cores busy, and then no sweep can scale).
2. ``--bookkeeping N``: a grid of N trivial points (one 8x8 layer each), run serially in this
   process; printed: the share of the wall time NOT spent turning points into rows (expansion,
   ids, the database commits, exports) — goal <= 5%.  ``--bookkeeping 0`` skips it.

Ratios are what to compare across machines; the machine load (``uptime``) is printed with them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "uptime unavailable"


def _burn(n: int = 20_000_000) -> float:
    t0 = time.perf_counter()
    x = 0
    for i in range(n):
        x += i
    return time.perf_counter() - t0


def machine_scaling() -> float:
    """Throughput of two CPU-bound processes at once / one alone, right now (2.0 = two free cores)."""
    import multiprocessing as mp

    one = _burn()
    with mp.get_context("spawn").Pool(2) as pool:
        t0 = time.perf_counter()
        pool.map(_burn, [20_000_000, 20_000_000])
        two = time.perf_counter() - t0
    return 2 * one / two


def _cpu_s() -> float:
    """CPU seconds (user + system) this process has used."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _warm(index: str) -> None:
    """On a worker: map the shared workload, fault its pages in and load the compiled kernels (what
    the bare call's process has already done), so that the timings compare steady states."""
    from simulator import hardware, run as simrun
    from simulator.sweep import workloads as shared_wl

    layers = shared_wl.open_shared(index)
    for layer in layers:
        layer.load().sum()
    smallest = min(layers, key=lambda l: l.rows * l.cols)  # read-only mapped masks: their own kernel variants
    simrun.simulate([smallest], hardware.load_hardware("vitcod", None), "cycle", [1, 2048])


def scaling(points_from: str, limit: int, worker_counts: list[int], tmp: Path, cache: Path | None = None) -> None:
    from distributed import Client

    from simulator import hardware, run as simrun
    from simulator.sweep import expand, load_sweep, machines, run_sweep
    from simulator.sweep import workloads as shared_wl
    from simulator.sweep.execute import local_cluster

    spec = load_sweep(points_from)
    points = expand(spec)[:limit]
    ms = machines(points)
    p0 = points[0]
    print(f"{len(points)} points ({len(ms)} machines) of {points_from}; workload {p0.workload.name}, tokens {sorted({p.tokens for p in points})}", flush=True)
    cache = cache or tmp / "workloads"
    t0 = time.perf_counter()
    idx = shared_wl.materialize(cache, p0.workload_key, p0.workload.synthetic, p0.masks_path, p0.seed)
    print(f"shared workload: materialised once (or reused from --workload-cache) in {time.perf_counter() - t0:.1f} s", flush=True)
    wl = shared_wl.open_shared(idx)
    _warm(str(idx))
    t0 = time.perf_counter()
    for m in ms:
        t1 = time.perf_counter()
        hw = hardware.load_hardware(m[0].preset, dict(m[0].hw) or None)
        simrun.simulate(wl, hw, m[0].mode, sorted({p.tokens for p in m}))
        print(f"  bare call {dict(m[0].hw)}: {time.perf_counter() - t1:.2f} s", flush=True)
    bare = (time.perf_counter() - t0) / len(ms)
    print(f"bare simulator call: {bare:.2f} s per machine (in this process, masks in memory)", flush=True)
    times, cpus = {}, {}
    cal0 = machine_scaling() if 1 in worker_counts and 2 in worker_counts else None
    for n in worker_counts:
        with local_cluster(n) as cluster, Client(cluster) as client:
            client.wait_for_workers(n)
            client.run(_warm, str(idx))
            before = client.run(_cpu_s)
            res = run_sweep(spec, tmp / f"out-{n}", client=client, points=points, progress=False, workload_dir=cache, export=False)
            cpu = sorted(v - before[k] for k, v in client.run(_cpu_s).items())
        times[n], cpus[n] = res.points_s, cpu
        per = res.points_s * n / len(ms)
        print(
            f"{n} worker(s): {res.points_s:.1f} s for {res.computed} points ({res.failed} failed); "
            f"{per:.2f} s per machine per worker = {per / bare:.2f}x the bare call; worker CPU "
            f"{' + '.join(f'{c:.1f}' for c in cpu)} s",
            flush=True,
        )
    if 1 in times and 2 in times:
        cal = machine_scaling()
        print(
            f"ratio t(1 worker) / t(2 workers) = {times[1] / times[2]:.2f}; two CPU-bound processes got "
            f"{cal0:.2f}x / {cal:.2f}x one process before / after (2.00 = both cores free)"
        )
        print(
            f"work: 2 workers used {sum(cpus[2]) / sum(cpus[1]):.2f}x the CPU of 1 (1.00 = nothing computed twice); "
            f"on two free cores they would take about t(1) x max(worker CPU) / CPU(1 worker): "
            f"ratio {sum(cpus[1]) / max(cpus[2]):.2f} (the driver's share not counted)"
        )


def bookkeeping(n_points: int, tmp: Path) -> None:
    from simulator.sweep import parse_sweep, run_sweep
    from simulator.sweep import worker

    lines = list(range(1, n_points // 2 + 1))
    spec = parse_sweep(
        {
            "sweep": {"preset": "vitcod", "mode": "cycle", "tokens": [1, 16]},
            "grid": {"pipeline_fill": lines},
            "workload": [{"name": "trivial", "synthetic": "8x8"}],
        },
        source="bookkeeping",
    )
    before = worker.SIMULATE_SECONDS[0]
    res = run_sweep(spec, tmp / "bookkeeping", workers=0, progress=False)
    simulate_s = worker.SIMULATE_SECONDS[0] - before
    print(
        f"bookkeeping: {res.total} trivial points in {res.wall_s:.1f} s; evaluating the points (simulate() + "
        f"totals) {res.sim_s:.1f} s = {res.sim_s / res.total * 1e3:.2f} ms per point, of which simulate() {simulate_s:.1f} s"
    )
    print(
        f"bookkeeping: {100 * (1 - res.sim_s / res.wall_s):.1f}% of the wall time outside the point evaluation "
        f"(expansion with each machine resolved once, ids, database commits, exports; goal <= 5%); {100 * (1 - simulate_s / res.wall_s):.1f}% outside "
        f"load_hardware + simulate() proper"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points-from", default=str(ROOT / "configs" / "sweeps" / "whatif-llama7b.toml"))
    ap.add_argument("--limit", type=int, default=16, help="points to run (the first N of the grid); 0 = skip")
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts to compare")
    ap.add_argument("--bookkeeping", type=int, default=100_000, help="points of the trivial grid (0 = skip)")
    ap.add_argument(
        "--workload-cache", default=None, metavar="DIR", help="materialise the workload here and keep it (reused by the next run; default: a temporary folder)"
    )
    args = ap.parse_args()
    print(f"load before: {_uptime()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="sweep-scale-") as d:
        if args.limit:
            cache = Path(args.workload_cache) if args.workload_cache else None
            scaling(args.points_from, args.limit, [int(x) for x in args.workers.split(",")], Path(d), cache)
        if args.bookkeeping:
            bookkeeping(args.bookkeeping, Path(d))
    print(f"load after: {_uptime()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
