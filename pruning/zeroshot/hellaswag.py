"""The HellaSwag validation set shipped inside the package, read into the rows lm-eval's task expects.

``pruning/tasks/hellaswag/hellaswag_val_full.txt.bz2`` holds all 10,042 validation tasks of
HellaSwag (Zellers et al., ACL 2019; MIT license, see the README and LICENSE beside it) in the
plain-text layout of the public ``hellaswag_text_data`` conversion, 6 lines per task::

    <activity_label>: <ctx>
    <label: 0-3>
    <ending 0>  ...  <ending 3>

:func:`read_shipped` checks the file's sha256, then :func:`parse_layout` turns each task into a row
of the Hugging Face ``hellaswag`` dataset (``ind, activity_label, ctx_a, ctx_b, ctx, endings,
label``, plus ``source``), which lm-eval's UNCHANGED ``hellaswag`` task reads through ``dataset_path:
json``.  :func:`format_layout` is the inverse (the round trip is exact on the shipped file).

What the layout does not keep (docs/results.md measures the cost):

* the ``ctx_a`` / ``ctx_b`` split.  lm-eval builds the query from ``ctx_a + " " +
  ctx_b.capitalize()``; the layout keeps ``ctx = ctx_a + " " + ctx_b`` only.  The split is rebuilt
  by :func:`split_context`: WikiHow rows (activity label one of :data:`WIKIHOW_CATEGORIES`) have an
  empty ``ctx_b`` in the release; ActivityNet rows end in an incomplete noun phrase (``ctx_b``), taken
  here as the text after the last sentence end (``. ``, ``! ``, ``? ``);
* the bracket markers (``[header]``, ``[step]``, ``[substeps]``, ``[title]``) of WikiHow text, which
  the conversion removed before lm-eval's own ``preprocess`` could (lm-eval applies it again to the
  rows given here; other bracketed text is still in the layout and is removed by it).  Where an
  ending BEGAN with a marker, lm-eval's ``preprocess`` leaves a leading space (it strips before it
  removes markers), so lm-eval scores ``"  X"`` (two spaces) where these rows give ``" X"``; which
  endings began with a marker is not recoverable from the layout.

No torch, no lm-eval here.
"""

from __future__ import annotations

import bz2
import hashlib
import re
from pathlib import Path

from besa_common.errors import UserError

DATA_DIR = Path(__file__).resolve().parent.parent / "tasks" / "hellaswag"
DATA_FILE = DATA_DIR / "hellaswag_val_full.txt.bz2"
SHA256 = "50b637899e4263c2bc456c2dc726c95d2c8cd8e2a552ea5bd7719ce3cb03fe5b"
N_TASKS = 10042
LINES_PER_TASK = 6
N_ENDINGS = 4

# The WikiHow categories of HellaSwag's validation set (its activity labels for WikiHow rows);
# every other label is an ActivityNet activity.  6,799 WikiHow + 3,243 ActivityNet = 10,042 rows.
WIKIHOW_CATEGORIES = frozenset(
    {
        "Cars & Other Vehicles",
        "Computers and Electronics",
        "Education and Communications",
        "Family Life",
        "Finance and Business",
        "Food and Entertaining",
        "Health",
        "Holidays and Traditions",
        "Home and Garden",
        "Home,Categories",
        "Personal Care and Style",
        "Pets and Animals",
        "Philosophy and Religion",
        "Relationships",
        "Sports and Fitness",
        "Travel",
        "Uncategorized",
        "Work World",
        "Youth",
    }
)
_SENTENCE_END = re.compile(r"[.!?] ")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def split_context(activity_label: str, ctx: str) -> tuple[str, str]:
    """``(ctx_a, ctx_b)`` of a layout context: ``ctx_b`` empty for WikiHow rows, the text after the
    last sentence end for ActivityNet rows (their incomplete final noun phrase); ``ctx`` joins them
    back as ``ctx_a + " " + ctx_b`` (``ctx_a`` alone when ``ctx_b`` is empty)."""
    if activity_label in WIKIHOW_CATEGORIES:
        return ctx, ""
    ends = list(_SENTENCE_END.finditer(ctx))
    if not ends:
        return ctx, ""
    cut = ends[-1].end()
    return ctx[: cut - 1], ctx[cut:]


def parse_layout(text: str, where: str = "hellaswag layout") -> list[dict]:
    """Rows in the HF ``hellaswag`` schema from the 6-line layout; malformed input -> UserError."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines or len(lines) % LINES_PER_TASK:
        raise UserError(f"{where}: {len(lines)} lines is not a positive multiple of {LINES_PER_TASK} (context, label, {N_ENDINGS} endings per task)")
    rows = []
    for i in range(0, len(lines), LINES_PER_TASK):
        head, label, *endings = lines[i : i + LINES_PER_TASK]
        line = i + 1
        if ": " not in head:
            raise UserError(f"{where} line {line}: expected '<activity_label>: <context>', got {head[:60]!r}")
        activity_label, ctx = head.split(": ", 1)
        if label not in {str(k) for k in range(N_ENDINGS)}:
            raise UserError(f"{where} line {line + 1}: label {label[:20]!r} is not 0-{N_ENDINGS - 1}")
        for k, e in enumerate(endings):
            if not e.strip():
                raise UserError(f"{where} line {line + 2 + k}: ending {k} is empty")
        ctx_a, ctx_b = split_context(activity_label, ctx)
        rows.append(
            {
                "ind": i // LINES_PER_TASK,  # position in the file (the release's own ind is not in the layout)
                "activity_label": activity_label,
                "ctx_a": ctx_a,
                "ctx_b": ctx_b,
                "ctx": ctx,
                "endings": endings,
                "label": label,  # a string, as in the HF dataset
                "source": "wikihow" if activity_label in WIKIHOW_CATEGORIES else "activitynet",
            }
        )
    return rows


def format_layout(rows: list[dict]) -> str:
    """The 6-line layout of ``rows`` (inverse of :func:`parse_layout`)."""
    out = []
    for r in rows:
        ctx = r["ctx_a"] + (" " + r["ctx_b"] if r["ctx_b"] else "")
        out += [f"{r['activity_label']}: {ctx}", str(r["label"]), *r["endings"]]
    return "\n".join(out) + "\n"


def read_layout(path: Path, sha256: str | None = None) -> list[dict]:
    """Rows of a layout file (``.bz2`` or plain text); with ``sha256``, its digest is checked first."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"HellaSwag data {path} is missing")
    if sha256 is not None and (got := file_sha256(path)) != sha256:
        raise UserError(f"HellaSwag data {path} has sha256 {got}, expected {sha256} (damaged or replaced file)")
    raw = path.read_bytes()
    try:
        data = bz2.decompress(raw) if path.suffix == ".bz2" else raw
        text = data.decode("utf-8")
    except (OSError, ValueError) as exc:
        raise UserError(f"HellaSwag data {path} is not {'bzip2-compressed ' if path.suffix == '.bz2' else ''}UTF-8 text ({exc})") from None
    return parse_layout(text, str(path))


def read_shipped() -> list[dict]:
    """The 10,042 shipped validation rows, digest checked."""
    rows = read_layout(DATA_FILE, SHA256)
    if len(rows) != N_TASKS:  # unreachable with the right digest; guards an edited constant
        raise UserError(f"HellaSwag data {DATA_FILE} holds {len(rows)} tasks, expected {N_TASKS}")
    return rows
