"""Realised sparsity and density spread of masks: a masks file / run directory or a synthetic spec.

    python bench/mask_profiles.py runs/default/wanda-s50            # a real masks file
    python bench/mask_profiles.py smollm2-135m:skewed=0.5 --seed 0  # a synthetic workload

Prints, per projection, the mean over layers of the column-density coefficient of variation
(std / mean of the kept fraction of each input column), the same for rows, the densest column, and
the parameter-weighted realised sparsity of the whole workload (fraction pruned).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulator import workload as wl  # noqa: E402


def profile(layers) -> tuple[dict[str, tuple[float, float, float]], float]:
    per: dict[str, list[tuple[float, float, float]]] = {}
    kept = total = 0
    for layer in layers:
        keep = layer.keep()
        col, row = keep.mean(0), keep.mean(1)
        cv = lambda v: float(v.std() / v.mean()) if v.mean() > 0 else 0.0  # noqa: E731
        per.setdefault(layer.proj, []).append((cv(col), cv(row), float(col.max())))
        kept += int(keep.sum())
        total += keep.size
    return {p: tuple(np.mean(v, axis=0)) for p, v in per.items()}, 1.0 - kept / total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", help="masks file, run directory, or synthetic spec SHAPE:PATTERN")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    src = Path(args.source)
    layers = wl.from_masks(src) if src.exists() else wl.synthetic(args.source, args.seed)
    per, sparsity = profile(layers)
    print(f"{args.source}: realised sparsity {sparsity:.5f} over {len(layers)} layers")
    print(f"{'projection':12s} {'col CV':>7s} {'row CV':>7s} {'max col':>8s}")
    for p, (c, r, m) in per.items():
        print(f"{p:12s} {c:7.3f} {r:7.3f} {m:8.3f}")
    allc = np.mean([v[0] for v in per.values()])
    print(f"{'mean':12s} {allc:7.3f}")


if __name__ == "__main__":
    main()
