"""Long HellaSwag evaluations in resumable chunks, and the paired table over them.

    python bench/hellaswag_chunks.py run --name NAME [--masks RUN_DIR] --out DIR [--model smollm2-135m]
                                     [--chunk 250] [--chunks K] [--seed 0] [--scorer shared]
    python bench/hellaswag_chunks.py table DIR [--runs dense,magnitude,...] [--baseline dense]

``run`` walks the shipped 10,042 tasks in the order of the seeded permutation behind ``--limit``
(:mod:`pruning.zeroshot.subset`): chunk k holds permutation entries ``[k*chunk, (k+1)*chunk)``, so
the first k chunks together are exactly ``besa eval --tasks hellaswag --limit k*chunk --zs-seed
SEED``'s subset.  Each finished chunk is written atomically to ``DIR/NAME/chunk-KKKK.json`` (the
per-example correctness of :func:`pruning.zeroshot.run_tasks`) and skipped when the command runs
again, so a killed run resumes where it stopped.  ``--chunks K`` stops after the first K chunks.

``table`` merges the chunks of every run over the tasks ALL listed runs have finished (the common
prefix), and prints acc / acc_norm with lm-eval's standard error ``sqrt(p(1-p)/(n-1))`` and the
paired difference of each run to the baseline (``besa_common.paired``) as Markdown, then the paired
``acc_norm`` difference of every pair of runs (between methods).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from besa_common.fileio import atomic_write_json
from besa_common.paired import align, paired_difference


def _order(n_total: int, seed: int) -> list[int]:
    return [int(i) for i in np.random.default_rng(seed).permutation(n_total)]  # the permutation subset_ids takes its prefix of


def cmd_run(a) -> int:
    import torch

    from pruning.runfiles import load_pruned, masks_file
    from pruning.zeroshot import run_tasks
    from pruning.zeroshot.hellaswag import N_TASKS

    order = _order(N_TASKS, a.seed)
    n_chunks = math.ceil(N_TASKS / a.chunk) if a.chunks is None else min(a.chunks, math.ceil(N_TASKS / a.chunk))
    out = Path(a.out) / a.name
    out.mkdir(parents=True, exist_ok=True)
    todo = [k for k in range(n_chunks) if not (out / f"chunk-{k:04d}.json").exists()]
    if not todo:
        print(f"{a.name}: all {n_chunks} chunks done", file=sys.stderr)
        return 0
    model, tok, info = load_pruned(a.model, None if a.masks is None else masks_file(a.masks))
    for k in todo:
        ids = order[k * a.chunk : (k + 1) * a.chunk]
        t0 = time.time()
        res = run_tasks(model, tok, ["hellaswag"], ids={"hellaswag": ids}, per_example=True, scorer=a.scorer, device=torch.device("cpu"))["hellaswag"]
        res.update(chunk=k, chunk_size=a.chunk, seed=a.seed, name=a.name, model=a.model, masks=a.masks, method=info["method"] or "dense")
        res.update(sparsity=info["sparsity"], scorer=a.scorer, seconds=round(time.time() - t0, 1), threads=torch.get_num_threads())
        atomic_write_json(out / f"chunk-{k:04d}.json", res)
        print(f"{time.strftime('%H:%M:%S')} {a.name} chunk {k}: {len(ids)} tasks in {res['seconds']} s, acc {res['acc']:.3f}", file=sys.stderr, flush=True)
    return 0


def load_run(d: Path) -> dict:
    """Merged per-example rows of one run's chunks: ``{"ids", "correct", "correct_norm", "chunks", "seconds"}``."""
    chunks = sorted(d.glob("chunk-*.json"))
    merged = {"ids": [], "correct": [], "correct_norm": [], "chunks": [], "seconds": 0.0}
    for f in chunks:
        r = json.loads(f.read_text())
        merged["chunks"].append(r["chunk"])
        merged["seconds"] += r["seconds"]
        for key in ("ids", "correct", "correct_norm"):
            merged[key] += r[key]
    return merged


def acc_se(x: list[int]) -> tuple[float, float]:
    n = len(x)
    p = sum(x) / n
    return p, math.sqrt(p * (1 - p) / (n - 1))


def cmd_table(a) -> int:
    root = Path(a.dir)
    names = a.runs.split(",") if a.runs else sorted(p.name for p in root.iterdir() if p.is_dir())
    runs = {n: load_run(root / n) for n in names}
    common = set.intersection(*(set(r["ids"]) for r in runs.values()))
    print(f"tasks scored by every run: {len(common)} (chunks {sorted(set.intersection(*(set(r['chunks']) for r in runs.values())))})\n")
    base = runs[a.baseline] if a.baseline in runs else None
    head = "| run | n | acc % | acc_norm % |" + (f" Δacc vs {a.baseline} (paired) | Δacc_norm vs {a.baseline} (paired) |" if base else "")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for n, r in runs.items():
        cells = [n, str(len(common))]
        for key in ("correct", "correct_norm"):
            ids, x, _ = align(r["ids"], r[key], r["ids"], r[key])
            x = [v for i, v in zip(ids, x) if i in common]
            p, se = acc_se(x)
            cells.append(f"{100 * p:.2f} ± {100 * se:.2f}")
        if base:
            for key in ("correct", "correct_norm"):
                ids, x, y = align(r["ids"], r[key], base["ids"], base[key])
                keep = [j for j, i in enumerate(ids) if i in common]
                d = paired_difference([x[j] for j in keep], [y[j] for j in keep])
                cells.append("-" if n == a.baseline else f"{100 * d['diff']:+.2f} ± {100 * d['se']:.2f}")
        print("| " + " | ".join(cells) + " |")
    print("\nEvery pair, acc_norm, paired on the same tasks (better run first; diff ± standard error, 95 % interval):\n")
    print("| better | worse | Δacc_norm (points) | 95 % interval | resolved |")
    print("|---|---|---|---|---|")
    norm = {}
    for n, r in runs.items():
        by_id = dict(zip(r["ids"], r["correct_norm"]))
        norm[n] = [by_id[i] for i in sorted(common)]
    order = sorted(norm, key=lambda n: -sum(norm[n]))
    for i, a_name in enumerate(order):
        for b_name in order[i + 1 :]:
            d = paired_difference(norm[a_name], norm[b_name])
            lo, hi = d["ci95"]
            print(
                f"| {a_name} | {b_name} | {100 * d['diff']:+.2f} ± {100 * d['se']:.2f} | [{100 * lo:+.2f}, {100 * hi:+.2f}] | {'yes' if lo > 0 or hi < 0 else 'no'} |"
            )
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--name", required=True)
    r.add_argument("--model", default="smollm2-135m")
    r.add_argument("--masks", default=None)
    r.add_argument("--out", required=True)
    r.add_argument("--chunk", type=int, default=250)
    r.add_argument("--chunks", type=int, default=None)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--scorer", default="shared", choices=["hflm", "shared"])
    t = sub.add_parser("table")
    t.add_argument("dir")
    t.add_argument("--runs", default=None)
    t.add_argument("--baseline", default="dense")
    a = ap.parse_args()
    return cmd_run(a) if a.cmd == "run" else cmd_table(a)


if __name__ == "__main__":
    sys.exit(main())
