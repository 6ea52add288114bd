"""Running the tasks on an in-memory model, the result tables and the ``besa eval`` zero-shot flags."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from besa_common.errors import UserError
from pruning.zeroshot.lmeval import build_tasks, offline
from pruning.zeroshot.shared_context import shared_context_lm
from pruning.zeroshot.subset import SUBSET_SEED, subset_ids
from pruning.zeroshot.tasks import TASKS, local_rows, parse_tasks


SCORERS = ("hflm", "shared")  # lm-eval's HFLM, or HFLM with each context run once (pruning.zeroshot.shared_context)


def run_tasks(
    model,
    tokenizer,
    tasks: list[str],
    task_data: Path | None = None,
    batch_size: int = 8,
    limit: int | None = None,
    per_example: bool = False,
    device=None,
    seed: int = SUBSET_SEED,
    ids: dict[str, list[int]] | None = None,
    scorer: str = "hflm",
) -> dict[str, dict]:
    """Zero-shot accuracy of ``model`` (already masked / quantized, in memory) on ``tasks``.

    Returns ``{task: {"acc", "acc_stderr", "acc_norm", "acc_norm_stderr", "n", "n_total", "split",
    "data", "subset"}}``: accuracies are fractions in [0, 1]; ``acc_norm*`` is ``None`` where the task
    does not define it; ``n`` = examples evaluated, ``n_total`` = examples in the data; ``data`` = the
    local file or ``hub:<dataset>``.  Zero-shot, lm-eval's default seeds, no cache.

    Which examples: a task with local rows (``task_data``, or the data shipped for it: HellaSwag)
    evaluates ``ids[task]`` when given (row indices), else with ``limit`` the seeded subset
    :func:`~pruning.zeroshot.subset.subset_ids` ``(n_total, limit, seed)`` (the subset of N lies
    inside the subset of N' > N), else every row; ``subset`` records ``{"rule", "seed", "limit"}``.
    A hub task evaluates lm-eval's first ``limit`` examples.
    ``per_example``: also return ``"ids"`` (row index of each evaluated example, ascending) with
    ``"correct"`` (and ``"correct_norm"``): 0/1 per example in that order, for paired comparisons.
    ``device``: move the model there first (None = leave it where it is).  ``scorer``: ``"hflm"``
    (lm-eval's ``HFLM``) or ``"shared"`` (:class:`~pruning.zeroshot.shared_context.SharedContextLM`,
    same log-likelihoods, each context run once).
    """
    tasks = parse_tasks(",".join(tasks))
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be >= 1, got {limit}")
    if batch_size < 1:
        raise UserError(f"--zs-batch-size must be >= 1, got {batch_size}")
    if scorer not in SCORERS:
        raise UserError(f"unknown scorer {scorer!r}; choose from {', '.join(SCORERS)}")
    if task_data is not None and not Path(task_data).is_dir():
        raise UserError(f"--task-data {task_data} is not a directory")
    local = {t: lr for t in tasks if (lr := local_rows(t, task_data)) is not None}  # check all before any model work
    chosen = {t: _chosen_ids(t, len(rows), limit, seed, (ids or {}).get(t)) for t, (rows, _) in local.items()}
    rows = {t: [local[t][0][i] for i in chosen[t]] for t in local}
    sources = {t: src for t, (_, src) in local.items()}

    from lm_eval import evaluator
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    lm_class = shared_context_lm() if scorer == "shared" else HFLM

    for name in ("lm-eval", "lm_eval"):
        logging.getLogger(name).setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="besa-zeroshot-") as tmp, offline():
        task_objs, sources = build_tasks(tasks, task_data, rows, Path(tmp), sources)
        was_training = model.training
        model.eval()
        if device is not None:
            model.to(device)
        lm = lm_class(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
        try:
            out = evaluator.simple_evaluate(
                model=lm,
                tasks=task_objs,
                limit=limit if len(local) < len(tasks) else None,  # local tasks are already cut to their subset
                log_samples=per_example,
                task_manager=TaskManager(include_defaults=False),  # tasks are built above; skip indexing ~10k YAMLs
                # default bootstrap_iters: acc/acc_norm are means, so lm-eval uses the closed-form stderr
            )
        finally:
            model.train(was_training)
    results = {}
    for t in tasks:
        res = _task_result(out, t, sources[t], per_example, chosen.get(t))
        if t in local:
            res["n_total"] = len(local[t][0])
            res["subset"] = _subset_record(len(local[t][0]), limit, seed, t in (ids or {}))
        else:
            res["subset"] = {"rule": "first", "seed": None, "limit": limit}
        results[t] = res
    return results


def _chosen_ids(task: str, n_total: int, limit: int | None, seed: int, explicit: list[int] | None) -> list[int]:
    if explicit is None:
        return subset_ids(n_total, limit, seed)
    ids = sorted(set(int(i) for i in explicit))
    if not ids or ids[0] < 0 or ids[-1] >= n_total:
        raise UserError(f"task {task}: example ids must be a non-empty set of row indices in [0, {n_total})")
    return ids


def _subset_record(n_total: int, limit: int | None, seed: int, explicit: bool) -> dict:
    if explicit:
        return {"rule": "ids", "seed": None, "limit": None}
    if limit is None or limit >= n_total:
        return {"rule": "all", "seed": None, "limit": None}
    return {"rule": "seeded", "seed": seed, "limit": limit}


def _task_result(out: dict, t: str, source: str, per_example: bool, ids: list[int] | None = None) -> dict:
    """One task's entry of :func:`run_tasks`' result, from lm-eval's output (``ids``: the row index of each doc)."""
    r = out["results"][t]
    ns = out["n-samples"][t]
    res = {
        "acc": float(r["acc,none"]),
        "acc_stderr": _num(r.get("acc_stderr,none")),
        "acc_norm": _num(r.get("acc_norm,none")),
        "acc_norm_stderr": _num(r.get("acc_norm_stderr,none")),
        "n": int(ns["effective"]),
        "n_total": int(ns["original"]),
        "split": TASKS[t].split,
        "data": source,
    }
    if per_example:
        samples = sorted(out["samples"][t], key=lambda x: x["doc_id"])
        res["ids"] = [int(x["doc_id"]) if ids is None else ids[x["doc_id"]] for x in samples]
        res["correct"] = [int(x["acc"]) for x in samples]
        if res["acc_norm"] is not None:
            res["correct_norm"] = [int(x["acc_norm"]) for x in samples]
    return res


def _num(v) -> float | None:
    try:
        return None if v is None or v == "N/A" else float(v)
    except (TypeError, ValueError):
        return None


def format_table(results: dict[str, dict], title: str = "") -> str:
    """Fixed-width table: task, n, acc ± stderr, acc_norm ± stderr (percent)."""

    def pm(v, s):
        return "-" if v is None else f"{100 * v:5.1f} ± {100 * s:4.1f}" if s is not None else f"{100 * v:5.1f}"

    lines = [title] if title else []
    lines.append(f"{'task':<14} {'n':>5}  {'acc %':>12}  {'acc_norm %':>12}")
    for t, r in results.items():
        lines.append(f"{t:<14} {r['n']:>5}  {pm(r['acc'], r['acc_stderr']):>12}  {pm(r['acc_norm'], r['acc_norm_stderr']):>12}")
    if results:
        mean = sum(r["acc"] for r in results.values()) / len(results)
        lines.append(f"{'mean acc':<14} {'':>5}  {100 * mean:>12.1f}")
    return "\n".join(lines)


def format_comparison(runs: dict[str, dict[str, dict]], metric: str = "acc") -> str:
    """One row per task, one column per run (``{run name: run_tasks() result}``), ``metric`` in percent."""
    names = list(runs)
    seen = {t for r in runs.values() for t in r}
    tasks = [t for t in TASKS if t in seen] + sorted(seen - set(TASKS))  # paper order, whatever order the JSON had
    lines = [f"{metric + ' %':<14} {'n':>4}  " + "  ".join(f"{n:>10}" for n in names)]
    for t in tasks:
        n = next((r[t]["n"] for r in runs.values() if t in r), 0)
        cells = []
        for name in names:
            v = runs[name].get(t, {}).get(metric)
            cells.append(f"{'-' if v is None else f'{100 * v:.1f}':>10}")
        lines.append(f"{t:<14} {n:>4}  " + "  ".join(cells))
    means = []
    for name in names:
        vals = [r[metric] for r in runs[name].values() if r.get(metric) is not None]
        means.append(f"{100 * sum(vals) / len(vals):>10.1f}" if vals else f"{'-':>10}")
    lines.append(f"{'mean':<14} {'':>4}  " + "  ".join(means))
    return "\n".join(lines)


def add_arguments(parser) -> None:
    """The zero-shot flags of ``besa eval``."""
    g = parser.add_argument_group("zero-shot (lm-eval)")
    g.add_argument(
        "--tasks", default=None, metavar="LIST", help=f"comma-separated zero-shot tasks ({','.join(TASKS)}) or 'all'; default: none (perplexity only)"
    )
    g.add_argument(
        "--task-data",
        type=Path,
        default=None,
        metavar="DIR",
        help="local task files in each task's released format (DIR/piqa/valid.jsonl + valid-labels.lst, "
        "DIR/boolq/dev.jsonl, DIR/hellaswag/hellaswag_val.jsonl, DIR/winogrande/dev.jsonl, "
        "DIR/arc_easy/ARC-Easy-Test.jsonl, DIR/arc_challenge/ARC-Challenge-Test.jsonl); "
        "default: HellaSwag's shipped validation set (10,042 tasks, offline) for hellaswag, "
        "the standard datasets from the local Hugging Face cache for the others",
    )
    g.add_argument("--zs-batch-size", type=int, default=8, metavar="N", help="lm-eval batch size (default 8)")
    g.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="evaluate N examples of each task: a fixed seeded subset for local/shipped data (--zs-seed; "
        "the subset of N lies inside the subset of any larger N), the first N for hub datasets",
    )
    g.add_argument("--zs-seed", type=int, default=SUBSET_SEED, metavar="S", help=f"seed of the --limit subset (default {SUBSET_SEED})")
    g.add_argument(
        "--zs-scorer",
        choices=SCORERS,
        default="hflm",
        help="hflm: lm-eval's HFLM (default); shared: the same log-likelihoods with each context run once (faster on multiple choice)",
    )
