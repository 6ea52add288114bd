"""Pruning quality on the project's SmolLM2 protocol: every configuration on the SAME tokens.

    python bench/quality.py [--only wanda,sparsegpt,...] [--add NAME='FLAGS' ...] [--out runs/quality] [--threads 2]

Protocol (defaults): SmolLM2-135M, calibration 32 windows × 256 tokens of the offline wiki train split
(seed 0), held-out = the first 8 windows × 1024 tokens of the wiki test split, sparsity exactly 0.500.
Configurations: Wanda, SparseGPT, BESA ``--exact-budget model`` and the same with ``--weight-update
admm`` / ``obs`` / ``admm --admm-reselect 10`` (the best: ``besa-exact+admm-resel``); the same for the 2:4 pattern (Wanda 2:4, SparseGPT 2:4, learned 2:4 = ``--method
besa --pattern 2:4`` ± update), whose ratio is to the best 2:4 baseline.  ``--add NAME='FLAGS'`` adds a
configuration (any ``besa prune`` flags) for exploration.  Each is pruned in-process through ``pruning.driver.prune_model`` into
``OUT/<name>/`` (a rerun resumes an interrupted one from its checkpoint), evaluated in memory (the
same model ``besa eval --masks OUT/<name>`` rebuilds), and printed as one table row: realised
sparsity, perplexity, ratio to the best of Wanda and SparseGPT (same pattern), prune wall seconds.
Each finished row is kept in ``OUT/<name>/quality.json`` with its flags and protocol; a later call with
the same flags and protocol reuses it (so configurations run in separate processes, e.g. in parallel,
and a final call prints them in one table).  Method options
come from ``besa prune``'s own parser, so the flags mean exactly what they mean there.  Prints
``uptime``: wall times on a shared machine are upper bounds, compare ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
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
    "besa-exact+admm-resel": ["--method", "besa", "--exact-budget", "model", "--weight-update", "admm", "--admm-reselect", "10"],
    "besa-dense+admm": ["--method", "besa", "--exact-budget", "model", "--target", "dense", "--weight-update", "admm"],
    "wanda+admm": ["--method", "wanda", "--weight-update", "admm"],
    "wanda+admm-resel": ["--method", "wanda", "--weight-update", "admm", "--admm-reselect", "10"],
    "wanda-2:4": ["--method", "wanda", "--pattern", "2:4"],
    "sparsegpt-2:4": ["--method", "sparsegpt", "--pattern", "2:4"],
    "besa-2:4": ["--method", "besa", "--pattern", "2:4"],
    "besa-2:4+admm": ["--method", "besa", "--pattern", "2:4", "--weight-update", "admm"],
    "besa-2:4+obs": ["--method", "besa", "--pattern", "2:4", "--weight-update", "obs"],
    "besa-2:4+admm-resel": ["--method", "besa", "--pattern", "2:4", "--weight-update", "admm", "--admm-reselect", "10"],
    "wanda-2:4+admm-resel": ["--method", "wanda", "--pattern", "2:4", "--weight-update", "admm", "--admm-reselect", "10"],
}
DEFAULT_ONLY = ("wanda", "sparsegpt", "besa-exact", "besa-exact+admm", "besa-exact+obs", "besa-exact+admm-resel")
BASELINES = ("wanda", "sparsegpt", "wanda-2:4", "sparsegpt-2:4")


def _prune_args(flags: list[str], out: Path):
    """``besa prune``'s parsed arguments for ``flags`` (its defaults for everything else)."""
    from besa.commands import prune

    parser = argparse.ArgumentParser()
    prune.add_arguments(parser)
    return parser.parse_args([*flags, "--sparsity", "0.5", "--out", str(out)])


def _protocol(args) -> dict:
    keys = ("model", "nsamples", "seqlen", "eval_windows", "eval_seqlen", "seed", "device")
    return {k: getattr(args, k) for k in keys}


def _pattern_of(flags: list[str]) -> str | None:
    return flags[flags.index("--pattern") + 1] if "--pattern" in flags else None


def cached_row(name: str, flags: list[str], args) -> dict | None:
    """The row a previous call stored for exactly these flags and this protocol, else None."""
    path = Path(args.out) / name / "quality.json"
    if not path.is_file():
        return None
    row = json.loads(path.read_text())
    return row if row.get("flags") == flags and row.get("protocol") == _protocol(args) else None


def run_config(name: str, flags: list[str], model_spec: str, calib, eval_tokens, args) -> dict:
    import torch

    from besa.commands.prune import parse_pattern
    from besa_common.fileio import atomic_write_text
    from pruning.driver import DriverConfig, prune_model
    from pruning.evaluate import perplexity
    from pruning.methods.base import METHODS
    from pruning.models import load_model
    from pruning.weight_update import WeightUpdateConfig

    out = Path(args.out) / name
    pa = _prune_args(flags, out)
    method = METHODS[pa.method].from_args(pa)
    wu = WeightUpdateConfig(mode=pa.weight_update, damp=pa.update_damp, iters=pa.admm_iters, rho=pa.admm_rho, exact=pa.admm_exact, reselect=pa.admm_reselect)
    config = DriverConfig(
        sparsity=0.5, pattern=parse_pattern(pa.pattern), device=args.device, seed=args.seed, progress=False, weight_update=wu, target=pa.target
    )
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
    row = {"name": name, "sparsity": manifest["realised_sparsity"], "ppl": res["ppl"], "windows": res["windows"], "seqlen": res["seqlen"], "prune_s": wall}
    row.update(flags=flags, protocol=_protocol(args), pattern=_pattern_of(flags))
    atomic_write_text(out / "quality.json", json.dumps(row, indent=1))
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--only", default=",".join(DEFAULT_ONLY), help=f"comma-separated subset of {', '.join(CONFIGS)} and the --add names")
    ap.add_argument("--add", action="append", default=[], metavar="NAME=FLAGS", help="an extra configuration: NAME='besa prune flags'")
    ap.add_argument("--nsamples", type=int, default=32)
    ap.add_argument("--seqlen", type=int, default=256)
    ap.add_argument("--eval-windows", type=int, default=8)
    ap.add_argument("--eval-seqlen", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="runs/quality")
    args = ap.parse_args(argv)
    configs = dict(CONFIGS)
    for item in args.add:
        name, sep, flags = item.partition("=")
        if not sep or not name.strip() or "/" in name:
            ap.error(f"--add needs NAME='FLAGS', got {item!r}")
        configs[name.strip()] = shlex.split(flags)
    names = [n.strip() for n in args.only.split(",") if n.strip()] + [n.partition("=")[0].strip() for n in args.add]
    names = list(dict.fromkeys(names))
    bad = [n for n in names if n not in configs]
    if bad:
        ap.error(f"unknown configuration {bad[0]!r} (known: {', '.join(configs)})")

    import torch

    from pruning.data import calibration, eval_tokens
    from pruning.models import load_model

    torch.set_num_threads(args.threads)
    _, tok = load_model(args.model)
    calib = calibration(tok, "wiki", args.nsamples, args.seqlen, args.seed)
    held_out = eval_tokens(tok, "wiki", "test", seqlen=args.eval_seqlen)
    rows = []
    for name in names:
        row = cached_row(name, configs[name], args)
        rows.append(row if row is not None else run_config(name, configs[name], args.model, calib, held_out, args))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    best: dict[str | None, float] = {}  # pattern -> best baseline perplexity
    for r in rows:
        if r["name"] in BASELINES:
            best[r["pattern"]] = min(best.get(r["pattern"], float("inf")), r["ppl"])
    print(
        f"calibration {args.nsamples} x {args.seqlen} wiki train (seed {args.seed}); held-out {rows[0]['windows']} x {rows[0]['seqlen']} wiki test; threads {args.threads}"
    )
    print("| configuration | flags | realised sparsity | ppl | × best(Wanda, SparseGPT), same pattern | prune s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r['ppl'] / best[r['pattern']]:.3f}" if r["pattern"] in best else ""
        print(f"| {r['name']} | `{' '.join(r['flags'])}` | {r['sparsity']:.4f} | {r['ppl']:.2f} | {ratio} | {r['prune_s']:.0f} |")
    print("uptime:", os.popen("uptime").read().strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
