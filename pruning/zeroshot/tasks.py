"""The six zero-shot tasks and their native data files: what each task is, where lm-eval defines
it, and readers that check a release file row by row and convert it to the row schema of the
Hugging Face dataset lm-eval's YAML was written for.  Every malformed row is a one-line
:class:`UserError` naming task, file and line.  No lm-eval, no torch here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from besa_common.errors import UserError
import pruning.zeroshot.hellaswag as hellaswag


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
            raise UserError(f'task winogrande: {path} line {i} answer {a!r} must be "1" or "2"')
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
    "piqa": TaskSpec(
        "piqa", "piqa/piqa.yaml", "validation", ("valid.jsonl", "valid-labels.lst"), "PIQA release rows {goal, sol1, sol2} + one 0/1 label per line"
    ),
    "boolq": TaskSpec(
        "boolq", "super_glue/boolq/default.yaml", "validation", ("dev.jsonl",), "BoolQ release rows {question, title, answer: true|false, passage}"
    ),
    "hellaswag": TaskSpec(
        "hellaswag", "hellaswag/hellaswag.yaml", "validation", ("hellaswag_val.jsonl",), "HellaSwag release rows {activity_label, ctx_a, ctx_b, endings, label}"
    ),
    "winogrande": TaskSpec(
        "winogrande", "winogrande/default.yaml", "validation", ("dev.jsonl",), 'WinoGrande release rows {sentence, option1, option2, answer: "1"|"2"}'
    ),
    "arc_easy": TaskSpec("arc_easy", "arc/arc_easy.yaml", "test", ("ARC-Easy-Test.jsonl",), _ARC_FMT),
    "arc_challenge": TaskSpec("arc_challenge", "arc/arc_challenge.yaml", "test", ("ARC-Challenge-Test.jsonl",), _ARC_FMT),
}
_READERS: dict[str, Callable[[TaskSpec, Path], list[dict]]] = {
    "piqa": _piqa,
    "boolq": _boolq,
    "hellaswag": _hellaswag,
    "winogrande": _winogrande,
    "arc_easy": _arc,
    "arc_challenge": _arc,
}
DEFAULT_TASKS = tuple(TASKS)
FIXTURES = Path(__file__).resolve().parent.parent / "tasks" / "fixtures"  # pruning/tasks/fixtures: hand-written test files, NOT benchmark data


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


# Tasks whose data ships inside the package (the default when no --task-data is given):
# task -> (reader of the checked rows in the HF schema, the file they come from).
SHIPPED: dict[str, tuple[Callable[[], list[dict]], Path]] = {"hellaswag": (hellaswag.read_shipped, hellaswag.DATA_FILE)}


def local_rows(task: str, task_data: Path | None) -> tuple[list[dict], str] | None:
    """``(rows, source file)`` of ``task`` from ``task_data`` or the shipped data; None = the hub dataset."""
    if task_data is not None:
        return load_task_rows(task, task_data), str(Path(task_data) / task / TASKS[task].files[0])
    if task in SHIPPED:
        read, path = SHIPPED[task]
        return read(), str(path)
    return None


def check_task_data(tasks: list[str], task_data: Path | None) -> None:
    """Fail fast (before a slow model load) on unknown tasks and missing or malformed local or shipped files."""
    tasks = parse_tasks(",".join(tasks))
    if task_data is not None and not Path(task_data).is_dir():
        raise UserError(f"--task-data {task_data} is not a directory")
    for t in tasks:
        local_rows(t, task_data)
