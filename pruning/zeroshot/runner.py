"""Running the tasks on an in-memory model, the result tables and the ``besa eval`` zero-shot flags."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from besa_common.errors import UserError
from pruning.zeroshot.lmeval import build_tasks, offline
from pruning.zeroshot.tasks import TASKS, load_task_rows, parse_tasks


def run_tasks(
    model,
    tokenizer,
    tasks: list[str],
    task_data: Path | None = None,
    batch_size: int = 8,
    limit: int | None = None,
    per_example: bool = False,
    device=None,
) -> dict[str, dict]:
    """Zero-shot accuracy of ``model`` (already masked / quantized, in memory) on ``tasks``.

    Returns ``{task: {"acc", "acc_stderr", "acc_norm", "acc_norm_stderr", "n", "n_total", "split",
    "data"}}``: accuracies are fractions in [0, 1]; ``acc_norm*`` is ``None`` where the task does
    not define it; ``n`` = examples evaluated (``limit`` caps it), ``n_total`` = examples in the data;
    ``data`` = the local file or ``hub:<dataset>``.  Zero-shot, lm-eval's default seeds, no cache.
    ``per_example``: also return ``"correct"`` (and ``"correct_norm"``): 0/1 per example, in file order.
    ``device``: move the model there first (None = leave it where it is); HFLM runs on the model's device.
    """
    tasks = parse_tasks(",".join(tasks))
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be >= 1, got {limit}")
    if batch_size < 1:
        raise UserError(f"--zs-batch-size must be >= 1, got {batch_size}")
    if task_data is not None and not Path(task_data).is_dir():
        raise UserError(f"--task-data {task_data} is not a directory")
    rows = {t: load_task_rows(t, task_data) for t in tasks} if task_data is not None else {}  # check all before any model work

    from lm_eval import evaluator
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    for name in ("lm-eval", "lm_eval"):
        logging.getLogger(name).setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="besa-zeroshot-") as tmp, offline():
        task_objs, sources = build_tasks(tasks, task_data, rows, Path(tmp))
        was_training = model.training
        model.eval()
        if device is not None:
            model.to(device)
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
        try:
            out = evaluator.simple_evaluate(
                model=lm,
                tasks=task_objs,
                limit=limit,
                log_samples=per_example,
                task_manager=TaskManager(include_defaults=False),  # tasks are built above; skip indexing ~10k YAMLs
                # default bootstrap_iters: acc/acc_norm are means, so lm-eval uses the closed-form stderr
            )
        finally:
            model.train(was_training)
    return {t: _task_result(out, t, sources[t], per_example) for t in tasks}


def _task_result(out: dict, t: str, source: str, per_example: bool) -> dict:
    """One task's entry of :func:`run_tasks`' result, from lm-eval's output."""
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
        "default: the standard datasets from the local Hugging Face cache",
    )
    g.add_argument("--zs-batch-size", type=int, default=8, metavar="N", help="lm-eval batch size (default 8)")
    g.add_argument("--limit", type=int, default=None, metavar="N", help="evaluate only the first N examples of each task")
