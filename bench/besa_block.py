"""Time per block and peak memory: BESA (and variants) vs Wanda on SmolLM2-135M, same calibration.

    python bench/besa_block.py [--threads 1] [--nsamples 16] [--seqlen 256] [--blocks 0 1] [--repeat 3]
                               [--methods wanda besa besa+admm wanda-2:4 besa-2:4 floor] [--device cpu|cuda]

Every method gets the same captured inputs of the same decoder blocks (the dense model's, so runs are
comparable block by block).  The timed region is what the driver does for one block between moving it
to the device and propagating its outputs: reconstruction targets where the driver computes them in a
separate dense pass (a method that ``makes_targets``, BESA, records them in its own statistics pass
and gets none), ``prune_block``, and for ``besa+admm`` (``besa+admm-resel``) the driver's ``--weight-update admm`` (``--admm-reselect 10``) step
(pruning.weight_update.update_block).  Statistics collection is inside every timing.
Each method runs in a fresh subprocess so its peak memory is its own: on CPU the peak resident set size
above the level before ``prune_block`` (Linux ``VmHWM``, reset through ``/proc/self/clear_refs``), on
CUDA ``torch.cuda.max_memory_allocated`` above the level before.  Each block is pruned ``--repeat``
times and the fastest run counts (the machine may be shared: the minimum is the least disturbed).
``floor`` is not a method: it times the matrix work BESA cannot skip without changing its results (one
dense pass, then a forward and a backward with all seven weight gradients per window), so its ratio is the
lower bound of BESA's.
Prints ``uptime`` before and after, one line per method (wall and CPU seconds per block, peak memory)
and the ratios to Wanda's wall time, CPU time and peak memory.  CPU time (process time, all threads)
is less sensitive to other jobs than wall time; on a loaded machine compare the CPU-time ratios.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time

# name -> (registered method, its options, n:m pattern as (kept, group) or None, --weight-update mode)
VARIANTS: dict[str, tuple[str, dict, tuple[int, int] | None, str]] = {
    "wanda": ("wanda", {}, None, "none"),
    "besa": ("besa", {"verbose": False}, None, "none"),
    "besa+admm": ("besa", {"verbose": False}, None, "admm"),
    "besa+admm-resel": ("besa", {"verbose": False}, None, "admm:10"),  # --weight-update admm --admm-reselect 10
    "wanda-2:4": ("wanda", {}, (2, 4), "none"),
    "besa-2:4": ("besa", {"verbose": False}, (2, 4), "none"),
    "floor": ("floor", {}, None, "none"),  # not a method: BESA's unavoidable matrix work, see _floor_method
}


def _floor_method():
    """A stand-in "method" timing the least work that BESA's results pin down: one dense forward of the
    block over the calibration windows (statistics and targets) plus, per window, one forward and one
    backward with the gradients of all seven weights (the mask gradient needs each full weight
    gradient).  No masks, sort, loss normalisation or optimiser; returns all-True masks."""
    import torch

    from pruning.methods.base import LINEAR_NAMES, BlockResult

    class Floor:
        needs_targets = makes_targets = False

        def prune_block(self, block, inputs, targets, job):
            with torch.no_grad():
                outs = [inputs.run(block, i, job.device) for i in range(len(inputs))]
            mods = dict(block.named_modules())
            flags = [(p, p.requires_grad) for p in block.parameters()]
            for p, _ in flags:
                p.requires_grad_(False)
            for i in range(len(inputs)):
                ws = {f"{n}.weight": mods[n].weight.detach().requires_grad_(True) for n in LINEAR_NAMES}
                out = torch.func.functional_call(block, ws, (inputs.hidden[i : i + 1].to(job.device),), dict(inputs.kwargs))
                out = out[0] if isinstance(out, (tuple, list)) else out
                ((out - outs[i]) ** 2).sum().backward()
            for p, f in flags:
                p.requires_grad_(f)
            return BlockResult(keep={n: torch.ones(mods[n].weight.shape, dtype=torch.bool) for n in LINEAR_NAMES})

    return Floor()


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "uptime: unavailable"


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        m = re.search(rf"^{field}:\s+(\d+) kB", fh.read(), re.M)
    return int(m.group(1)) if m else 0


class PeakRSS:
    """Peak resident set size above the level at ``__enter__`` (bytes).

    Exact where the kernel lets a process reset its high-water mark (``/proc/self/clear_refs``):
    ``VmHWM`` then covers only the timed region.  Elsewhere a 2 ms sampling thread (may miss peaks).
    """

    def __enter__(self):
        self.base = _status_kib("VmRSS") * 1024
        self.exact = False
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")  # reset VmHWM to the current RSS
            self.exact = True
        except OSError:
            pass
        self.peak = self.base
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._poll, daemon=True)
        if not self.exact:
            self._t.start()
        return self

    def _poll(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _status_kib("VmRSS") * 1024)

    def __exit__(self, *exc):
        self._stop.set()
        if self._t.is_alive():
            self._t.join()
        now = _status_kib("VmHWM" if self.exact else "VmRSS") * 1024
        self.peak = max(self.peak, now)

    @property
    def extra(self) -> int:
        return max(0, self.peak - self.base)


def _capture(model, calib, layers, nsamples):
    """Hidden states entering block 0 and the keyword arguments every block receives."""
    import torch

    captured = {}

    class Stop(Exception):
        pass

    def catch(_mod, args, kwargs):
        captured["h"] = args[0] if args else kwargs["hidden_states"]
        captured["kw"] = {k: v for k, v in kwargs.items() if k != "hidden_states"}
        raise Stop

    handle = layers[0].register_forward_pre_hook(catch, with_kwargs=True)
    hs = []
    with torch.no_grad():
        for i in range(nsamples):
            try:
                model(calib[i : i + 1])
            except Stop:
                hs.append(captured["h"])
    handle.remove()
    return torch.cat(hs), captured["kw"]


def worker(variant: str, nsamples: int, seqlen: int, blocks: list[int], device: str, threads: int, repeat: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    import pruning.methods  # noqa: F401  (fills the registry)
    from pruning.data import calibration
    from pruning.driver.capture import forward_block
    from pruning.methods.base import LINEAR_NAMES, METHODS, BlockInputs, BlockJob
    from pruning.models import decoder_layers, load_model

    method_name, options, pattern, update = VARIANTS[variant]
    if update != "none":
        from pruning.weight_update import GramCollector, WeightUpdateConfig, update_block

        mode, _, reselect = update.partition(":")  # "admm:N" = --admm-reselect N
        update_cfg = WeightUpdateConfig(mode=mode, reselect=int(reselect or 0))
    dev = torch.device(device)
    model, tok = load_model("smollm2-135m")
    calib = calibration(tok, "wiki", nsamples, seqlen, 0)
    layers = decoder_layers(model)
    hidden, kw_cpu = _capture(model, calib, layers, nsamples)
    kwargs = {k: (tuple(t.to(dev) for t in v) if isinstance(v, tuple) else v.to(dev) if torch.is_tensor(v) else v) for k, v in kw_cpu.items()}
    autocast = torch.bfloat16 if dev.type == "cuda" else None
    S = 0.5 if pattern is None else 1 - pattern[0] / pattern[1]  # N:M = N kept of M
    walls, cpus, peaks = [], [], []
    for bi in range(max(blocks) + 1):
        block = layers[bi]
        inputs = BlockInputs(hidden, kwargs)
        if bi in blocks:
            block.to(dev)
            m = _floor_method() if method_name == "floor" else METHODS[method_name](**options)
            driver_targets = m.needs_targets and not m.makes_targets  # the driver's own dense pass (pruned targets)
            job = BlockJob(bi, f"model.layers.{bi}.", {n: S for n in LINEAR_NAMES}, pattern, dev, autocast, 0)
            best_wall = best_cpu = float("inf")
            for _ in range(repeat):
                if update != "none":  # as the driver does: the update's XᵀX rides along the method's dense pass
                    job = dataclasses.replace(job, input_observer=GramCollector())
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                    base = torch.cuda.memory_allocated()
                with PeakRSS() as rss:
                    t0, c0 = time.perf_counter(), time.process_time()
                    targets = None
                    if driver_targets:
                        targets = torch.empty_like(inputs.hidden)
                        forward_block(block, inputs.hidden, targets, kwargs, dev, autocast)
                    res = m.prune_block(block, inputs, targets, job)
                    if update != "none":  # what the driver does next with --weight-update (block still dense)
                        update_block(block, inputs, job, res.keep, update_cfg)
                    if dev.type == "cuda":
                        torch.cuda.synchronize()
                    best_wall = min(best_wall, time.perf_counter() - t0)
                    best_cpu = min(best_cpu, time.process_time() - c0)
                peaks.append(torch.cuda.max_memory_allocated() - base if dev.type == "cuda" else rss.extra)
            walls.append(best_wall)
            cpus.append(best_cpu)
            block.to("cpu")
        with torch.no_grad():  # propagate the dense block so later blocks see realistic inputs
            hidden = torch.cat([BlockInputs(hidden, kw_cpu).run(block, i, torch.device("cpu")) for i in range(nsamples)])
    return {"variant": variant, "wall_s": sum(walls) / len(walls), "cpu_s": sum(cpus) / len(cpus), "peak_bytes": max(peaks), "blocks": blocks}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nsamples", type=int, default=16)
    ap.add_argument("--seqlen", type=int, default=256)
    ap.add_argument("--blocks", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch threads in every worker (default 1)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per block; the fastest counts (default 3)")
    ap.add_argument(
        "--methods", nargs="+", default=["wanda", "besa"], choices=sorted(VARIANTS), help="what to time (wanda is always included: the ratios are to it)"
    )
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker, a.nsamples, a.seqlen, a.blocks, a.device, a.threads, a.repeat)))
        return 0
    if a.threads < 1 or a.repeat < 1:
        print("besa_block: --threads and --repeat must be >= 1", file=sys.stderr)
        return 2
    variants = ["wanda"] + [v for v in a.methods if v != "wanda"]
    before = _uptime()
    res = {}
    for v in variants:
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            v,
            "--nsamples",
            str(a.nsamples),
            "--seqlen",
            str(a.seqlen),
            "--device",
            a.device,
            "--threads",
            str(a.threads),
            "--repeat",
            str(a.repeat),
            "--blocks",
            *map(str, a.blocks),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode:
            print(out.stderr[-2000:], file=sys.stderr)
            return out.returncode
        res[v] = json.loads(out.stdout.strip().splitlines()[-1])
    machine = f"{platform.machine()} {os.cpu_count()}-core CPU" if a.device == "cpu" else a.device
    print(f"uptime before: {before}")
    print(
        f"SmolLM2-135M, calibration {a.nsamples}x{a.seqlen} tokens, blocks {a.blocks}, {a.device} ({machine}, "
        f"{a.threads} thread(s)), fastest of {a.repeat} per block, BESA defaults (1 epoch, row-wise)"
    )
    w = res["wanda"]
    for v in variants:
        r = res[v]
        print(
            f"  {v:10s} wall {r['wall_s']:7.2f} s/block  cpu {r['cpu_s']:7.2f} s/block  peak +{r['peak_bytes'] / 2**20:7.1f} MiB"
            f"   vs wanda: wall {r['wall_s'] / w['wall_s']:.2f}x  cpu {r['cpu_s'] / w['cpu_s']:.2f}x  "
            f"peak {r['peak_bytes'] / max(w['peak_bytes'], 1):.1f}x"
        )
    print(f"uptime after:  {_uptime()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
