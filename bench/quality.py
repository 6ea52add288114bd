"""Pruning quality on the project's SmolLM2 protocol: every configuration on the SAME tokens.

    python bench/quality.py [--only wanda,sparsegpt,...] [--out runs/quality] [--threads 2]

Protocol (defaults): SmolLM2-135M, calibration 32 windows × 256 tokens of the offline wiki train split
(seed 0), held-out = the first 8 windows × 1024 tokens of the wiki test split, sparsity exactly 0.500.
Configurations: Wanda, SparseGPT, BESA ``--exact-budget model`` and the same with ``--weight-update
admm`` / ``obs``.  Each is pruned in-process through ``pruning.driver.prune_model`` into
``OUT/<name>/`` (a rerun resumes an interrupted one from its checkpoint), evaluated in memory (the
same model ``besa eval --masks OUT/<name>`` rebuilds), and printed as one table row: realised
sparsity, perplexity, ratio to the best of Wanda and SparseGPT, prune wall seconds.  Method options
come from ``besa prune``'s own parser, so the flags mean exactly what they mean there.  Prints
``uptime``: wall times on a shared machine are upper bounds, compare ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# name -> besa prune flags (besides --sparsity 0.5)
CONFIGS: dict[str, list[str]] = {
    "wanda": ["--method", "wanda"],
    "sparsegpt": ["--method", "sparsegpt"],
    "besa-exact": ["--method", "besa", "--exact-budget", "model"],
    "besa-exact+admm": ["--method", "besa", "--exact-budget", "model", "--weight-update", "admm"],
    "besa-exact+obs": ["--method", "besa", "--exact-budget", "model", "--weight-update", "obs"],
}
BASELINES = ("wanda", "sparsegpt")


def _prune_args(flags: list[str], out: Path):
    """``besa prune``'s parsed arguments for ``flags`` (its defaults for everything else)."""
    from pruning import cmd_prune

    parser = argparse.ArgumentParser()
    cmd_prune.add_arguments(parser)
    return parser.parse_args([*flags, "--sparsity", "0.5", "--out", str(out)])


def run_config(name: str, model_spec: str, calib, eval_tokens, args) -> dict:
    import torch

    from pruning.cmd_prune import _methods
    from pruning.driver import DriverConfig, prune_model
    from pruning.evaluate import perplexity
    from pruning.models import load_model
    from pruning.weight_update import WeightUpdateConfig

    out = Path(args.out) / name
    pa = _prune_args(CONFIGS[name], out)
    method = _methods()[pa.method].from_args(pa)
    wu = WeightUpdateConfig(mode=pa.weight_update, damp=pa.update_damp, iters=pa.admm_iters, rho=pa.admm_rho, exact=pa.admm_exact)
    config = DriverConfig(sparsity=0.5, device=args.device, seed=args.seed, progress=False, weight_update=wu)
    model, _ = load_model(model_spec, dtype=torch.float32)
    t0 = time.perf_counter()
    manifest = prune_model(
        model,
        method,
        calib,
        out,
        config,
        meta={"model": model_spec, "calibration": {"bench": "quality", "nsamples": args.nsamples, "seqlen": args.seqlen, "seed": args.seed}},
    )
    wall = time.perf_counter() - t0
    res = perplexity(model, eval_tokens, args.eval_seqlen, args.eval_windows, args.device, None, progress=False)
    return {"name": name, "sparsity": manifest["realised_sparsity"], "ppl": res["ppl"], "windows": res["windows"], "seqlen": res["seqlen"], "prune_s": wall}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--only", default=",".join(CONFIGS), help=f"comma-separated subset of {', '.join(CONFIGS)}")
    ap.add_argument("--nsamples", type=int, default=32)
    ap.add_argument("--seqlen", type=int, default=256)
    ap.add_argument("--eval-windows", type=int, default=8)
    ap.add_argument("--eval-seqlen", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="runs/quality")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    bad = [n for n in names if n not in CONFIGS]
    if bad:
        ap.error(f"unknown configuration {bad[0]!r} (known: {', '.join(CONFIGS)})")

    import torch

    from pruning.data import calibration, eval_tokens
    from pruning.models import load_model

    torch.set_num_threads(args.threads)
    _, tok = load_model(args.model)
    calib = calibration(tok, "wiki", args.nsamples, args.seqlen, args.seed)
    held_out = eval_tokens(tok, "wiki", "test", seqlen=args.eval_seqlen)
    rows = []
    for name in names:
        rows.append(run_config(name, args.model, calib, held_out, args))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    base = [r["ppl"] for r in rows if r["name"] in BASELINES]
    best = min(base) if base else None
    print(
        f"calibration {args.nsamples} x {args.seqlen} wiki train (seed {args.seed}); held-out {rows[0]['windows']} x {rows[0]['seqlen']} wiki test; threads {args.threads}"
    )
    print("| configuration | realised sparsity | ppl | × best(Wanda, SparseGPT) | prune s |")
    print("|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r['ppl'] / best:.3f}" if best else ""
        print(f"| {r['name']} | {r['sparsity']:.4f} | {r['ppl']:.2f} | {ratio} | {r['prune_s']:.0f} |")
    print("uptime:", os.popen("uptime").read().strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
