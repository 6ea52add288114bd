"""HellaSwag scoring speed and agreement: lm-eval's HFLM vs SharedContextLM (each context run once).

    OMP_NUM_THREADS=1 python bench/hellaswag_speed.py [--model smollm2-135m] [--tasks 100] [--seed 0] [--batch-size 8]

Scores the (context, continuation) requests lm-eval's own hellaswag task builds (its process_docs,
target delimiter " ") for a seeded subset of the shipped validation set, once with each scorer,
and prints tasks/second, the largest log-likelihood difference, and acc / acc_norm of both (they
must be identical).  Timings depend on the machine's load: quote `uptime` beside them.
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def pairs(rows: list[dict]) -> list[tuple[str, str, int, list[int]]]:
    """Per task: lm-eval's query, its choices, the gold index and the choices' lengths in characters."""
    import datasets
    from lm_eval.tasks.hellaswag.utils import process_docs

    docs = process_docs(datasets.Dataset.from_list(rows))
    return [(d["query"], d["choices"], int(d["gold"])) for d in docs]


def score(lm, tasks) -> tuple[list[list[float]], float]:
    reqs = []
    for q, choices, _ in tasks:
        for c in choices:
            reqs.append(((q, " " + c), *lm._encode_pair(q, " " + c)))
    t0 = time.perf_counter()
    out = lm._loglikelihood_tokens(reqs, disable_tqdm=True)
    dt = time.perf_counter() - t0
    lls, k = [], 0
    for _, choices, _ in tasks:
        lls.append([out[k + j][0] for j in range(len(choices))])
        k += len(choices)
    return lls, dt


def accuracy(tasks, lls) -> tuple[float, float]:
    acc = sum(max(range(len(ll)), key=ll.__getitem__) == g for (_, _, g), ll in zip(tasks, lls)) / len(tasks)
    norm = 0
    for (_, choices, g), ll in zip(tasks, lls):
        n = [x / len(" " + c) for x, c in zip(ll, choices)]  # lm-eval's acc_norm: per character of the continuation
        norm += max(range(len(n)), key=n.__getitem__) == g
    return acc, norm / len(tasks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--tasks", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=8)
    a = ap.parse_args()
    from lm_eval.models.huggingface import HFLM

    from pruning.models import load_model
    from pruning.zeroshot.hellaswag import read_shipped
    from pruning.zeroshot.shared_context import SharedContextLM
    from pruning.zeroshot.subset import subset_ids

    model, tok = load_model(a.model)
    model.eval()
    rows = read_shipped()
    tasks = pairs([rows[i] for i in subset_ids(len(rows), a.tasks, a.seed)])
    report = {"tasks": len(tasks), "threads": torch.get_num_threads(), "batch_size": a.batch_size}
    lls = {}
    for name, cls in (("hflm", HFLM), ("shared", SharedContextLM)):
        lm = cls(pretrained=model, tokenizer=tok, batch_size=a.batch_size)
        lls[name], dt = score(lm, tasks)
        acc, acc_norm = accuracy(tasks, lls[name])
        report[name] = {"seconds": round(dt, 2), "tasks_per_s": round(len(tasks) / dt, 3), "acc": acc, "acc_norm": acc_norm}
    diffs = [abs(x - y) for a_, b_ in zip(lls["hflm"], lls["shared"]) for x, y in zip(a_, b_)]
    report["max_abs_loglik_diff"] = max(diffs)
    report["speedup"] = round(report["hflm"]["seconds"] / report["shared"]["seconds"], 2)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
