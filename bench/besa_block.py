"""Time per block and peak memory: BESA vs Wanda on SmolLM2-135M at the same calibration size.

    python bench/besa_block.py [--nsamples 16] [--seqlen 256] [--blocks 0 1] [--device cpu|cuda]

Both methods get the same captured inputs of the same decoder blocks (the dense model's, so the two
runs are comparable block by block); BESA also gets the dense targets.  Each method runs in a fresh
subprocess so its peak memory is its own: on CPU the peak resident set size above the level before
``prune_block`` (sampled every 2 ms), on CUDA ``torch.cuda.max_memory_allocated``.  Prints one line per
method and the ratios BESA / Wanda.  Statistics collection is included in both timings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Peak resident set size above the level at ``__enter__``, sampled on a thread (bytes)."""

    def __enter__(self):
        self.base = self.peak = _rss_bytes()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._poll, daemon=True)
        self._t.start()
        return self

    def _poll(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss_bytes())

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss_bytes())

    @property
    def extra(self) -> int:
        return self.peak - self.base


def worker(method: str, nsamples: int, seqlen: int, blocks: list[int], device: str, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    from pruning.data import calibration
    from pruning.methods.base import LINEAR_NAMES, METHODS, BlockInputs, BlockJob
    from pruning.models import decoder_layers, load_model

    import pruning.methods.besa  # noqa: F401  (registers "besa")
    try:
        import pruning.methods.wanda  # noqa: F401
    except ImportError:
        pass

    dev = torch.device(device)
    model, tok = load_model("smollm2-135m")
    calib = calibration(tok, "wiki", nsamples, seqlen, 0)
    layers = decoder_layers(model)
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
    hidden = torch.cat(hs)  # (n, T, C) inputs of block 0
    kwargs = {k: (tuple(t.to(dev) for t in v) if isinstance(v, tuple) else v.to(dev) if torch.is_tensor(v) else v)
              for k, v in captured["kw"].items()}
    autocast = torch.bfloat16 if dev.type == "cuda" else None
    times, peaks = [], []
    for bi in range(max(blocks) + 1):
        block = layers[bi]
        inputs = BlockInputs(hidden, kwargs)
        if bi in blocks:
            block.to(dev)
            with torch.no_grad():
                targets = torch.cat([inputs.run(block, i, dev) for i in range(nsamples)]).cpu()
            job = BlockJob(bi, f"model.layers.{bi}.", {n: 0.5 for n in LINEAR_NAMES}, None, dev, autocast, 0)
            m = METHODS[method]()
            if dev.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
            with PeakRSS() as rss:
                t0 = time.perf_counter()
                m.prune_block(block, inputs, targets if m.needs_targets else None, job)
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
            peaks.append(torch.cuda.max_memory_allocated() - base if dev.type == "cuda" else rss.extra)
            block.to("cpu")
        with torch.no_grad():  # propagate the dense block so later blocks see realistic inputs
            hidden = torch.cat([BlockInputs(hidden, captured["kw"]).run(block, i, torch.device("cpu")) for i in range(nsamples)])
    return {"method": method, "s_per_block": sum(times) / len(times), "peak_bytes": max(peaks), "blocks": blocks}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nsamples", type=int, default=16)
    ap.add_argument("--seqlen", type=int, default=256)
    ap.add_argument("--blocks", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker, a.nsamples, a.seqlen, a.blocks, a.device, a.threads)))
        return 0
    res = {}
    for method in ("wanda", "besa"):
        cmd = [sys.executable, __file__, "--worker", method, "--nsamples", str(a.nsamples), "--seqlen", str(a.seqlen),
               "--device", a.device, "--threads", str(a.threads), "--blocks", *map(str, a.blocks)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode:
            print(out.stderr[-2000:], file=sys.stderr)
            return out.returncode
        res[method] = json.loads(out.stdout.strip().splitlines()[-1])
    machine = f"{platform.machine()} {os.cpu_count()}-core CPU" if a.device == "cpu" else a.device
    print(f"SmolLM2-135M, 50% unstructured, calibration {a.nsamples}x{a.seqlen} tokens, blocks {a.blocks}, "
          f"{a.device} ({machine}, {a.threads} threads), BESA defaults (1 epoch, row-wise)")
    for m in ("wanda", "besa"):
        r = res[m]
        print(f"  {m:6s} {r['s_per_block']:8.2f} s/block   peak +{r['peak_bytes'] / 2**20:8.1f} MiB")
    w, b = res["wanda"], res["besa"]
    print(f"  ratio besa/wanda: time {b['s_per_block'] / w['s_per_block']:.1f}x, "
          f"peak memory {b['peak_bytes'] / max(w['peak_bytes'], 1):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
