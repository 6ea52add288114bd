"""What the text layout of the shipped HellaSwag data costs against lm-eval on the released rows.

    OMP_NUM_THREADS=1 python bench/hellaswag_layout_cost.py [--model smollm2-135m] [--activitynet 300] [--wikihow 200] [--seed 0]
                                                           [--baseline CHUNKS_DIR]

Two things the layout cannot give back (pruning/zeroshot/hellaswag.py), each measured as a paired
difference on the same tasks, per-example, through lm-eval's unchanged task (``--task-data`` rows):

* ``capitalisation`` -- ActivityNet rows (the first ``--activitynet`` of the seeded order): the
  shipped rows (ctx_b rebuilt, so lm-eval capitalises it as on the released rows) vs the layout
  context taken whole (``ctx_a = ctx``, ``ctx_b = ""``: no capital).  This is what a wrong
  ctx_a/ctx_b split could cost at most per row, and what the rebuilt split recovers.
* ``marker_space`` -- WikiHow rows (the first ``--wikihow`` of the seeded order): the shipped
  endings vs the same endings where each one, independently with probability 1/2 (seeded), is
  given back a leading ``[step]`` marker, so that lm-eval's ``preprocess`` leaves the leading space it
  leaves on released endings that began with a marker (continuation ``"  X"``).  Which released
  endings began with a marker is not in the layout; this measures how much the quirk moves the
  score when it falls on endings at random.

Prints one JSON object: per comparison n, acc / acc_norm of both variants and the paired
differences (``besa_common.paired``).  ``--baseline DIR``: take the shipped-rows results from the
chunks of ``bench/hellaswag_chunks.py run`` of the same model and scorer (``DIR``, e.g.
``/work/hs-runs/chunks/dense``; same seed) instead of scoring them again; every compared task
must be in them.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path

from besa_common.paired import paired_difference


def _run(model, tok, rows: list[dict], scorer: str) -> dict:
    from pruning.zeroshot import run_tasks

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "hellaswag").mkdir()
        (Path(d) / "hellaswag" / "hellaswag_val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        return run_tasks(model, tok, ["hellaswag"], Path(d), per_example=True, scorer=scorer)["hellaswag"]


def _compare(model, tok, base: list[dict], variant: list[dict], scorer: str, baseline: dict | None) -> dict:
    if baseline is None:
        a = _run(model, tok, base, scorer)
    else:  # the same rows, already scored: per-example results by row index (ind)
        a = {key: [baseline[key][r["ind"]] for r in base] for key in ("correct", "correct_norm")}
        a |= {"n": len(base), "acc": sum(a["correct"]) / len(base), "acc_norm": sum(a["correct_norm"]) / len(base)}
    b = _run(model, tok, variant, scorer)
    out = {"n": a["n"], "shipped": {k: a[k] for k in ("acc", "acc_norm")}, "variant": {k: b[k] for k in ("acc", "acc_norm")}}
    for key in ("correct", "correct_norm"):
        out[f"diff_{key}"] = paired_difference(b[key], a[key])  # variant - shipped
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--activitynet", type=int, default=300)
    ap.add_argument("--wikihow", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scorer", default="shared", choices=["hflm", "shared"])
    ap.add_argument("--baseline", default=None, metavar="CHUNKS_DIR")
    a = ap.parse_args()
    import numpy as np

    from pruning.models import load_model
    from pruning.zeroshot.hellaswag import read_shipped

    rows = read_shipped()
    order = [int(i) for i in np.random.default_rng(a.seed).permutation(len(rows))]  # the --limit order
    anet = [rows[i] for i in order if rows[i]["source"] == "activitynet"][: a.activitynet]
    wiki = [rows[i] for i in order if rows[i]["source"] == "wikihow"][: a.wikihow]
    baseline = None
    if a.baseline is not None:
        chunks = [json.loads(f.read_text()) for f in sorted(Path(a.baseline).glob("chunk-*.json"))]
        baseline = {key: {i: v for c in chunks for i, v in zip(c["ids"], c[key])} for key in ("correct", "correct_norm")}
        if {(c["model"], c["masks"], c["scorer"], c["seed"]) for c in chunks} != {(a.model, None, a.scorer, a.seed)}:
            raise SystemExit(f"--baseline {a.baseline}: its chunks are not all of --model {a.model}, dense, --scorer {a.scorer}, --seed {a.seed}")
        missing = [r["ind"] for r in anet + wiki if r["ind"] not in baseline["correct"]]
        if missing:
            raise SystemExit(f"--baseline lacks {len(missing)} of the {len(anet) + len(wiki)} tasks; let its run cover more chunks first")
    model, tok = load_model(a.model)
    report = {"model": a.model, "seed": a.seed, "scorer": a.scorer, "baseline": a.baseline}
    uncapitalised = [dict(r, ctx_a=r["ctx"], ctx_b="") for r in anet]
    report["capitalisation"] = _compare(model, tok, anet, uncapitalised, a.scorer, baseline)
    rng = random.Random(a.seed)
    marked = [dict(r, endings=[("[step] " + e) if rng.random() < 0.5 else e for e in r["endings"]]) for r in wiki]
    report["marker_space"] = _compare(model, tok, wiki, marked, a.scorer, baseline)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
