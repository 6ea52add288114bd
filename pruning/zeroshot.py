"""Zero-shot accuracy of an in-memory (masked, optionally quantized) model through lm-eval 0.4.

The six tasks of the BESA paper -- PIQA, BoolQ, HellaSwag, WinoGrande, ARC-easy, ARC-challenge --
run through lm-eval's own code paths: its task YAMLs (prompts, choices, metrics, splits) taken from
the installed ``lm_eval`` package, its ``HFLM`` wrapper around the model object we already hold
(no re-download, no hub), and its ``simple_evaluate``.  Hub access is switched off for the whole
run (``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE``).

Data, two ways:

* no ``task_data``: the standard task definitions, unchanged; this works when their datasets sit
  in the local Hugging Face cache (the registries this project can reach ship none of them);
* ``task_data=DIR``: every task reads local files in the format its authors released, one folder
  per task (:data:`TASKS` lists the files).  The rows are checked, converted to the row schema of
  the Hugging Face dataset the lm-eval YAML was written for, and fed to it through ``dataset_path:
  json`` + ``data_files``; nothing else of the task definition changes.

    DIR/piqa/valid.jsonl + valid-labels.lst        PIQA release (yonatanbisk.com/piqa): {goal, sol1, sol2}; labels 0/1
    DIR/boolq/dev.jsonl                            BoolQ release (google-research-datasets/boolean-questions): {question, title, answer: bool, passage}
    DIR/hellaswag/hellaswag_val.jsonl              HellaSwag release (rowanz/hellaswag): {activity_label, ctx_a, ctx_b, endings[4], label}
    DIR/winogrande/dev.jsonl                       WinoGrande 1.1 release (allenai/winogrande): {sentence with one "_", option1, option2, answer: "1"|"2"}
    DIR/arc_easy/ARC-Easy-Test.jsonl               ARC-V1-Feb2018 release (allenai): {id, question: {stem, choices: [{text, label}]}, answerKey}
    DIR/arc_challenge/ARC-Challenge-Test.jsonl     same, Challenge set

Splits are lm-eval's: the validation split for PIQA, BoolQ, HellaSwag and WinoGrande (their test
labels are hidden), the test split for ARC.  Metrics are the task's own: ``acc`` for all six,
``acc_norm`` (log-likelihood per byte of the answer) where the task defines it (PIQA, HellaSwag,
ARC); for BoolQ and WinoGrande ``acc_norm`` is reported as ``None``.  Standard errors are lm-eval's
(``sqrt(p(1-p)/(n-1))`` for a mean).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from besa_common.errors import UserError


@dataclass(frozen=True)
class TaskSpec:
    """One supported task: where lm-eval defines it and which native files feed it."""

    name: str
    yaml: str  # path of the task YAML inside the installed lm_eval/tasks/
    split: str  # the split lm-eval evaluates: "validation" or "test"
    files: tuple[str, ...]  # native files, relative to DIR/<name>/
    fmt: str  # one-line description of the native format, for error messages


# ----------------------------------------------------------------------------- native readers
# Each reader takes the task's native files and returns rows in the schema of the HF dataset the
# lm-eval YAML expects.  Every malformed row raises a one-line UserError naming task, file, line.


def _read_jsonl(task: str, path: Path) -> list[dict]:
    rows = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"task {task}: {path} is not UTF-8 text (expected JSON lines)") from None
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"task {task}: {path} line {i} is not JSON ({exc.msg}); expected one JSON object per line") from None
        if not isinstance(row, dict):
            raise UserError(f"task {task}: {path} line {i} is a JSON {type(row).__name__}, expected an object")
        rows.append(row)
    if not rows:
        raise UserError(f"task {task}: {path} holds no examples")
    return rows


def _need(task: str, path: Path, i: int, row: dict, field: str, kind: type | tuple[type, ...], fmt: str) -> Any:
    if field not in row:
        raise UserError(f"task {task}: {path} line {i} lacks field {field!r} (expected {fmt})")
    v = row[field]
    # bool is an int subclass: never accept one for the other.
    if not isinstance(v, kind) or (isinstance(v, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,))):
        raise UserError(f"task {task}: {path} line {i} field {field!r} is {type(v).__name__}, expected {getattr(kind, '__name__', kind)} ({fmt})")
    if isinstance(v, str) and not v.strip():
        raise UserError(f"task {task}: {path} line {i} field {field!r} is empty")
    return v


def _piqa(spec: TaskSpec, d: Path) -> list[dict]:
    qpath, lpath = d / spec.files[0], d / spec.files[1]
    rows = _read_jsonl(spec.name, qpath)
    labels = [ln.strip() for ln in lpath.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if len(labels) != len(rows):
        raise UserError(f"task piqa: {lpath} has {len(labels)} labels but {qpath} has {len(rows)} examples")
    out = []
    for i, (row, lab) in enumerate(zip(rows, labels), 1):
        if lab not in ("0", "1"):
            raise UserError(f"task piqa: {lpath} line {i} is {lab!r}, expected 0 or 1")
        out.append({k: _need("piqa", qpath, i, row, k, str, spec.fmt) for k in ("goal", "sol1", "sol2")} | {"label": int(lab)})
    return out


def _boolq(spec: TaskSpec, d: Path) -> list[dict]:
    path = d / spec.files[0]
    out = []
    for i, row in enumerate(_read_jsonl(spec.name, path), 1):
        q = _need("boolq", path, i, row, "question", str, spec.fmt)
        p = _need("boolq", path, i, row, "passage", str, spec.fmt)
        a = _need("boolq", path, i, row, "answer", bool, spec.fmt)
        # super_glue/boolq (what the YAML was written for): label 1 = True = "yes".
        out.append({"question": q, "passage": p, "idx": i - 1, "label": int(a)})
    return out


def _hellaswag(spec: TaskSpec, d: Path) -> list[dict]:
    path = d / spec.files[0]
    out = []
    for i, row in enumerate(_read_jsonl(spec.name, path), 1):
        r = {k: _need("hellaswag", path, i, row, k, str, spec.fmt) for k in ("activity_label", "ctx_a")}
        r["ctx_b"] = row.get("ctx_b", "")  # may be empty in the release (WikiHow rows)
        if not isinstance(r["ctx_b"], str):
            raise UserError(f"task hellaswag: {path} line {i} field 'ctx_b' is {type(r['ctx_b']).__name__}, expected str ({spec.fmt})")
        endings = _need("hellaswag", path, i, row, "endings", list, spec.fmt)
        if len(endings) < 2 or not all(isinstance(e, str) and e.strip() for e in endings):
            raise UserError(f"task hellaswag: {path} line {i} field 'endings' must be a list of >= 2 non-empty strings")
        label = _need("hellaswag", path, i, row, "label", (int, str), spec.fmt)
        if str(label) not in {str(k) for k in range(len(endings))}:
            raise UserError(f"task hellaswag: {path} line {i} label {label!r} is not an index into its {len(endings)} endings")
        r.update(endings=endings, label=str(label), ctx=row.get("ctx", f"{r['ctx_a']} {r['ctx_b']}"))
        out.append(r)
    return out


def _winogrande(spec: TaskSpec, d: Path) -> list[dict]:
    path = d / spec.files[0]
    out = []
    for i, row in enumerate(_read_jsonl(spec.name, path), 1):
        s = _need("winogrande", path, i, row, "sentence", str, spec.fmt)
        if s.count("_") != 1:
            raise UserError(f"task winogrande: {path} line {i} sentence must contain exactly one '_' blank, found {s.count('_')}")
        o1 = _need("winogrande", path, i, row, "option1", str, spec.fmt)
        o2 = _need("winogrande", path, i, row, "option2", str, spec.fmt)
        a = _need("winogrande", path, i, row, "answer", (str, int), spec.fmt)
        if str(a) not in ("1", "2"):
            raise UserError(f"task winogrande: {path} line {i} answer {a!r} must be \"1\" or \"2\"")
        out.append({"sentence": s, "option1": o1, "option2": o2, "answer": str(a)})
    return out


def _arc(spec: TaskSpec, d: Path) -> list[dict]:
    path = d / spec.files[0]
    out = []
    for i, row in enumerate(_read_jsonl(spec.name, path), 1):
        q = _need(spec.name, path, i, row, "question", dict, spec.fmt)
        stem = _need(spec.name, path, i, q, "stem", str, spec.fmt)
        choices = _need(spec.name, path, i, q, "choices", list, spec.fmt)
        if len(choices) < 2 or not all(isinstance(c, dict) and isinstance(c.get("text"), str) and isinstance(c.get("label"), str) for c in choices):
            raise UserError(f"task {spec.name}: {path} line {i} question.choices must be a list of >= 2 {{text, label}} objects")
        labels = [c["label"] for c in choices]
        key = _need(spec.name, path, i, row, "answerKey", str, spec.fmt)
        if key not in labels:
            raise UserError(f"task {spec.name}: {path} line {i} answerKey {key!r} is not one of the choice labels {labels}")
        out.append({"id": str(row.get("id", i)), "question": stem, "choices": {"text": [c["text"] for c in choices], "label": labels}, "answerKey": key})
    return out


_ARC_FMT = "ARC release rows {id, question: {stem, choices: [{text, label}]}, answerKey}"
TASKS: dict[str, TaskSpec] = {
    "piqa": TaskSpec("piqa", "piqa/piqa.yaml", "validation", ("valid.jsonl", "valid-labels.lst"), "PIQA release rows {goal, sol1, sol2} + one 0/1 label per line"),
    "boolq": TaskSpec("boolq", "super_glue/boolq/default.yaml", "validation", ("dev.jsonl",), "BoolQ release rows {question, title, answer: true|false, passage}"),
    "hellaswag": TaskSpec("hellaswag", "hellaswag/hellaswag.yaml", "validation", ("hellaswag_val.jsonl",), "HellaSwag release rows {activity_label, ctx_a, ctx_b, endings, label}"),
    "winogrande": TaskSpec("winogrande", "winogrande/default.yaml", "validation", ("dev.jsonl",), 'WinoGrande release rows {sentence, option1, option2, answer: "1"|"2"}'),
    "arc_easy": TaskSpec("arc_easy", "arc/arc_easy.yaml", "test", ("ARC-Easy-Test.jsonl",), _ARC_FMT),
    "arc_challenge": TaskSpec("arc_challenge", "arc/arc_challenge.yaml", "test", ("ARC-Challenge-Test.jsonl",), _ARC_FMT),
}
_READERS: dict[str, Callable[[TaskSpec, Path], list[dict]]] = {
    "piqa": _piqa, "boolq": _boolq, "hellaswag": _hellaswag, "winogrande": _winogrande, "arc_easy": _arc, "arc_challenge": _arc,
}
DEFAULT_TASKS = tuple(TASKS)
FIXTURES = Path(__file__).parent / "tasks" / "fixtures"  # hand-written test files, NOT benchmark data


def parse_tasks(text: str) -> list[str]:
    """``"piqa,boolq"`` -> ``["piqa", "boolq"]``; ``"all"`` = the six; unknown names -> UserError."""
    names = list(DEFAULT_TASKS) if text.strip() == "all" else [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise UserError("--tasks is empty; choose from " + ",".join(TASKS))
    for t in names:
        if t not in TASKS:
            raise UserError(f"unknown task {t!r}; supported: {','.join(TASKS)}")
    return list(dict.fromkeys(names))


def load_task_rows(task: str, task_data: Path) -> list[dict]:
    """Read and check ``task_data/<task>/`` in the task's native format; rows in the HF schema."""
    spec = TASKS[task]
    d = Path(task_data) / task
    for f in spec.files:
        if not (d / f).is_file():
            raise UserError(f"task {task}: missing task data file {d / f} (expected {spec.fmt})")
    return _READERS[task](spec, d)


def check_task_data(tasks: list[str], task_data: Path | None) -> None:
    """Fail fast (before a slow model load) on unknown tasks and missing or malformed local files."""
    tasks = parse_tasks(",".join(tasks))
    if task_data is not None:
        if not Path(task_data).is_dir():
            raise UserError(f"--task-data {task_data} is not a directory")
        for t in tasks:
            load_task_rows(t, task_data)


# ----------------------------------------------------------------------------- lm-eval glue


def task_config(task: str, data_file: Path | None = None, cache_dir: Path | None = None) -> dict:
    """lm-eval's own config for ``task`` (from the installed YAML); with ``data_file``, fed from that JSONL."""
    import lm_eval
    from lm_eval.tasks._yaml_loader import load_yaml  # resolves include: and !function like lm-eval does

    spec = TASKS[task]
    cfg = load_yaml(Path(lm_eval.__file__).parent / "tasks" / spec.yaml, resolve_func=True)
    for key in ("tag", "group"):
        cfg.pop(key, None)
    cfg["num_fewshot"] = 0  # zero-shot, as in the BESA paper
    if data_file is not None:
        cfg.update(
            dataset_path="json",
            dataset_name=None,
            dataset_kwargs={"data_files": {spec.split: str(data_file)}, **({"cache_dir": str(cache_dir)} if cache_dir else {})},
            training_split=None,  # zero-shot: no few-shot pool needed
            validation_split=spec.split if spec.split == "validation" else None,
            test_split=spec.split if spec.split == "test" else None,
        )
    return cfg


@contextlib.contextmanager
def offline() -> Iterator[None]:
    """No hub access inside: env vars for subprocesses + the flags libraries already read at import."""
    import datasets.config
    import huggingface_hub.constants as hub

    saved_env = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    saved = (hub.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE)
    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    hub.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = True
    try:
        yield
    finally:
        hub.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE = saved
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _build_task(task: str, cfg: dict, source: str):
    from lm_eval.api.task import ConfigurableTask

    try:
        return ConfigurableTask(config=cfg)  # loads the dataset now, so failures name the task
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if source.startswith("hub:"):
            spec = TASKS[task]
            raise UserError(
                f"task {task}: standard dataset {source[4:]} is not reachable offline ({type(exc).__name__}); "
                f"pass --task-data DIR with DIR/{task}/{' + '.join(spec.files)}"
            ) from None
        raise UserError(f"task {task}: lm-eval could not load {source} ({type(exc).__name__}: {first})") from None


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
        task_objs, sources = [], {}
        for t in tasks:
            if task_data is not None:
                f = Path(tmp) / f"{t}.jsonl"
                f.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[t]), encoding="utf-8")
                cfg = task_config(t, f, cache_dir=Path(tmp) / "hf-datasets")
                sources[t] = str(Path(task_data) / t / TASKS[t].files[0])
            else:
                cfg = task_config(t)
                sources[t] = f"hub:{cfg['dataset_path']}" + (f"/{cfg['dataset_name']}" if cfg.get("dataset_name") else "")
            task_objs.append(_build_task(t, cfg, sources[t]))
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
    results: dict[str, dict] = {}
    for t in tasks:
        r = out["results"][t]
        ns = out["n-samples"][t]
        results[t] = {
            "acc": float(r["acc,none"]),
            "acc_stderr": _num(r.get("acc_stderr,none")),
            "acc_norm": _num(r.get("acc_norm,none")),
            "acc_norm_stderr": _num(r.get("acc_norm_stderr,none")),
            "n": int(ns["effective"]),
            "n_total": int(ns["original"]),
            "split": TASKS[t].split,
            "data": sources[t],
        }
        if per_example:
            samples = sorted(out["samples"][t], key=lambda x: x["doc_id"])
            results[t]["correct"] = [int(x["acc"]) for x in samples]
            if results[t]["acc_norm"] is not None:
                results[t]["correct_norm"] = [int(x["acc_norm"]) for x in samples]
    return results


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
    g.add_argument("--tasks", default=None, metavar="LIST",
                   help=f"comma-separated zero-shot tasks ({','.join(TASKS)}) or 'all'; default: none (perplexity only)")
    g.add_argument("--task-data", type=Path, default=None, metavar="DIR",
                   help="local task files in each task's released format (DIR/piqa/valid.jsonl + valid-labels.lst, "
                        "DIR/boolq/dev.jsonl, DIR/hellaswag/hellaswag_val.jsonl, DIR/winogrande/dev.jsonl, "
                        "DIR/arc_easy/ARC-Easy-Test.jsonl, DIR/arc_challenge/ARC-Challenge-Test.jsonl); "
                        "default: the standard datasets from the local Hugging Face cache")
    g.add_argument("--zs-batch-size", type=int, default=8, metavar="N", help="lm-eval batch size (default 8)")
    g.add_argument("--limit", type=int, default=None, metavar="N", help="evaluate only the first N examples of each task")
