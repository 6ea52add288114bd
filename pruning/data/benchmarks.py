"""The standard perplexity benchmarks: WikiText-2, PTB and C4, through HF ``datasets`` or from local
files in their native formats (``data_path``).  Nothing here reaches the hub by itself, so offline
use needs ``data_path`` (or a populated ``datasets`` cache).  No torch here.
"""

from __future__ import annotations

import glob
import gzip
import json
import os
from pathlib import Path
from typing import Iterator

from besa_common.errors import UserError

BENCHMARKS = ("wikitext2", "ptb", "c4")

_WT2_FILES = {"train": "train", "validation": "valid", "test": "test"}


def _read_parquet_column(files: list[str], column: str) -> list[str]:
    import pyarrow.parquet as pq

    out: list[str] = []
    for f in sorted(files):
        try:
            out.extend(pq.read_table(f, columns=[column]).column(column).to_pylist())
        except Exception as exc:
            raise UserError(f"{f}: not a readable parquet file with a {column!r} column ({type(exc).__name__})") from None
    return out


def _hf_load(*args, **kwargs):
    try:
        import datasets
    except ImportError:
        raise UserError("the `datasets` package is needed to load benchmarks without --data-path") from None
    try:
        return datasets.load_dataset(*args, **kwargs)
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"could not load {args[0]} with `datasets` (offline? pass --data-path with the local files): {msg[:200]}") from None


def wikitext2_lines(split: str, data_path: str | os.PathLike | None = None) -> list[str]:
    """WikiText-2 (raw) rows of ``split``, as HF's ``text`` column (each line with its ``\\n``).

    Local ``data_path``: a folder with ``wiki.{train,valid,test}.raw`` (the original zip's layout)
    or HF parquet files ``{split}-*.parquet`` (optionally under ``wikitext-2-raw-v1/``).
    """
    if data_path is None:
        return list(_hf_load("wikitext", "wikitext-2-raw-v1", split=split)["text"])
    root = Path(data_path)
    raw = root / f"wiki.{_WT2_FILES[split]}.raw"
    if raw.is_file():
        with open(raw, encoding="utf-8") as fh:
            return fh.readlines()
    for sub in (root, root / "wikitext-2-raw-v1"):
        files = glob.glob(str(sub / f"{split}-*.parquet"))
        if files:
            return _read_parquet_column(files, "text")
    raise UserError(f"WikiText-2 {split} not found in {root} (expected wiki.{_WT2_FILES[split]}.raw or {split}-*.parquet)")


def ptb_sentences(split: str, data_path: str | os.PathLike | None = None) -> list[str]:
    """PTB (``ptb_text_only``) sentences of ``split``.

    Local ``data_path``: a folder with ``ptb.{train,valid,test}.txt`` (one sentence per line, the
    Mikolov layout) or HF parquet files ``{split}-*.parquet`` with a ``sentence`` column.
    """
    if data_path is None:
        return list(_hf_load("ptb_text_only", "penn_treebank", split=split)["sentence"])
    root = Path(data_path)
    txt = root / f"ptb.{_WT2_FILES[split]}.txt"
    if txt.is_file():
        with open(txt, encoding="utf-8") as fh:
            # The HF builder strips each line; keep the same sentences.
            return [line.strip() for line in fh if line.strip()]
    for sub in (root, root / "penn_treebank"):
        files = glob.glob(str(sub / f"{split}-*.parquet"))
        if files:
            return _read_parquet_column(files, "sentence")
    raise UserError(f"PTB {split} not found in {root} (expected ptb.{_WT2_FILES[split]}.txt or {split}-*.parquet)")


def _iter_jsonl(path: str) -> Iterator[dict]:
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)
    except (OSError, EOFError, ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a readable (gzipped) JSON-lines file ({type(exc).__name__})") from None


def c4_documents(split: str, data_path: str | os.PathLike | None = None, limit: int | None = None) -> list[str]:
    """C4 (en) documents: the reference uses the first train shard and the first validation shard.

    Local ``data_path``: a folder with ``c4-train.*.json.gz`` / ``c4-validation.*.json.gz`` (the
    allenai/c4 ``en/`` layout, JSON lines with ``text``, ``timestamp``, ``url``; ``en/`` may be a
    sub-folder), read in file-name order.
    """
    if split == "test":
        split = "validation"  # C4 has no test split; the protocol evaluates on validation
    shard = {"train": "en/c4-train.00000-of-01024.json.gz", "validation": "en/c4-validation.00000-of-00008.json.gz"}[split]
    if data_path is None:
        return list(_hf_load("allenai/c4", data_files={split: shard}, split=split)["text"])[:limit]
    root = Path(data_path)
    files: list[str] = []
    for sub in (root, root / "en"):
        files = sorted(glob.glob(str(sub / f"c4-{split}.*.json*")))
        if files:
            break
    if not files:
        raise UserError(f"C4 {split} not found in {root} (expected c4-{split}.*.json.gz)")
    docs: list[str] = []
    for f in files:
        for row in _iter_jsonl(f):
            if "text" not in row:
                raise UserError(f"{f}: a C4 row without a 'text' field")
            docs.append(row["text"])
            if limit is not None and len(docs) >= limit:
                return docs
    return docs
