"""How many evaluation windows resolve a ranking? Paired bootstrap over the first k windows.

    python bench/ppl_windows.py RUN/eval.json ... [--windows 4,8,16,24,32,48]

Each eval.json must hold per-window NLLs (``besa eval`` writes them) over the same windows.  The
first k windows are exactly what ``besa eval --max-windows k`` (``[eval].max_windows = k``) scores,
so one evaluation on many windows answers the question for every smaller k: per k, every run's
perplexity with its own 95 % interval, then every pair's paired ratio interval (worse / better) and
whether it is resolved (:func:`besa_common.bootstrap.paired_ppl`, as the report computes it).
"""

from __future__ import annotations

import argparse
import json
import sys
from itertools import combinations
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from besa_common.bootstrap import paired_ppl, ppl, ppl_ci  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("evals", nargs="+", type=Path, help="eval.json files (named after their parent folder)")
    ap.add_argument("--windows", default="4,8,16,24,32,48", help="prefix sizes k to report")
    args = ap.parse_args(argv)
    runs = {}
    for p in args.evals:
        ev = json.loads(p.read_text())
        if "window_nll" not in ev:
            print(f"{p}: no per-window NLLs (rerun besa eval)", file=sys.stderr)
            return 2
        runs[p.parent.name] = ev
    shas = {ev["windows_sha256"] for ev in runs.values()}
    n = min(len(ev["window_nll"]) for ev in runs.values())
    if len(shas) != 1:
        print("the evaluations did not score the same windows (windows_sha256 differ)", file=sys.stderr)
        return 2
    for k in [int(x) for x in args.windows.split(",") if int(x) <= n]:
        nll = {r: np.asarray(ev["window_nll"][:k]) for r, ev in runs.items()}
        tok = np.asarray(next(iter(runs.values()))["window_tokens"][:k], dtype=float)
        order = sorted(runs, key=lambda r: ppl(nll[r], tok))
        print(f"\n## first {k} windows ({int(tok.sum()):,} tokens)\n")
        for r in order:
            lo, hi = ppl_ci(nll[r], tok) or (float("nan"), float("nan"))
            print(f"  {r:<16} ppl {ppl(nll[r], tok):8.2f}  95% [{lo:.2f}, {hi:.2f}]")
        resolved = 0
        for a, b in combinations(order, 2):
            p = paired_ppl(nll[a], nll[b], tok)["ratio"]
            resolved += p.resolved
            print(f"  {b:>16} / {a:<16} {p.estimate:.4f}  95% [{p.low:.4f}, {p.high:.4f}]  {'resolved' if p.resolved else 'NOT resolved'}")
        print(f"  -> {resolved} of {len(order) * (len(order) - 1) // 2} pairs resolved")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
