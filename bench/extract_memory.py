"""Peak memory of ``besa masks extract`` on a sharded bf16 checkpoint (no torch).

    python bench/extract_memory.py [--shards 4] [--shard-mb 128]

Writes a LLaMA-shaped checkpoint of SHARDS safetensors files (bf16, 50 % exact zeros) into a
temporary directory, then extracts its masks in a fresh subprocess and prints the extraction's
peak traced allocation (tracemalloc: numpy buffers included) and the subprocess's peak RSS
(VmHWM) above its peak just before extraction, both against the largest shard.
"""

from __future__ import annotations

import argparse
import json
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import sys, tracemalloc
sys.path.insert(0, sys.argv[2])
from besa_common.extract import extract_masks
def hwm():  # peak RSS of this process image in bytes (VmHWM; ru_maxrss would include the parent's, kept across exec)
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) * 1024
before = hwm()
tracemalloc.start()
ex = extract_masks(sys.argv[1])
peak = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
after = hwm()
print(len(ex.packed), peak, after - before, before, after)
"""


def write_checkpoint(d: Path, shards: int, shard_bytes: int, seed: int = 0) -> list[int]:
    """Each shard: one [rows, 4096] bf16 up_proj-shaped weight per block, 50 % zeros."""
    rng = np.random.default_rng(seed)
    cols = 4096
    rows = shard_bytes // (2 * cols)
    wm, sizes = {}, []
    for s in range(shards):
        name = f"model.layers.{s}.mlp.up_proj.weight"
        w = rng.standard_normal((rows, cols), dtype=np.float32) + 3.0
        w[rng.random((rows, cols)) < 0.5] = 0.0
        data = (w.view(np.uint32) >> 16).astype("<u2").tobytes()
        header = json.dumps({name: {"dtype": "BF16", "shape": [rows, cols], "data_offsets": [0, len(data)]}}).encode()
        header += b" " * (-len(header) % 8)
        fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        (d / fname).write_bytes(struct.pack("<Q", len(header)) + header + data)
        wm[name] = fname
        sizes.append((d / fname).stat().st_size)
    (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": wm}))
    (d / "config.json").write_text(json.dumps({"model_type": "llama"}))
    return sizes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--shard-mb", type=int, default=128)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="besa-extract-bench-") as tmp:
        sizes = write_checkpoint(Path(tmp), args.shards, args.shard_mb << 20)
        out = subprocess.run([sys.executable, "-c", CHILD, tmp, str(ROOT)], capture_output=True, text=True, check=True)
        layers, traced, rss, rss0, rss1 = (int(x) for x in out.stdout.split())
    largest = max(sizes)
    print(
        f"{args.shards} shards, largest {largest / 2**20:.1f} MiB, {layers} layers: "
        f"traced peak {traced / 2**20:.1f} MiB ({traced / largest:.2f}x the largest shard), "
        f"peak RSS {rss1 / 2**20:.1f} MiB, {rss0 / 2**20:.1f} MiB before extracting (growth {rss / largest:.2f}x the largest shard)"
    )


if __name__ == "__main__":
    main()
