"""Text for calibration and perplexity: offline corpora and the standard benchmark loaders.

Datasets (``--dataset`` / ``--calib-dataset``):

* ``wiki``  — English Wikipedia prose extracted from the gensim wheel's test dump (``besa data
  prepare``): ~106 articles, ~450 K words; split BY ARTICLE in page order: article ``i`` goes to
  validation when ``i % 10 == 8``, test when ``i % 10 == 9``, train otherwise (deterministic).
* ``news``  — gensim's ``lee_background.cor`` (300 news stories, one per line), same rule per story.
* ``novel`` — *Botchan* from the sentencepiece sdist (optional): chapters I–IX train, X validation,
  XI test.
* ``wikitext2``, ``ptb``, ``c4`` — the real benchmarks, via HF ``datasets`` or local files in their
  native formats (``data_path``); nothing here reaches the hub by itself, so offline use needs
  ``data_path`` (or a populated ``datasets`` cache).

Protocols (``docs/besa.md``, section 6): perplexity text is WikiText-2 test joined with ``"\\n\\n"``; PTB test sentences
joined with ``" "``; C4 = first 1100 validation documents joined with ``" "``, truncated to 256
windows.  Calibration follows the reference sampler: pick a random training document whose
tokenized length exceeds ``seqlen``, take a random ``seqlen`` window (C4 and our document corpora);
WikiText-2 and PTB have no documents in the reference either: windows come from the joined train
text.  Our offline corpora are small: when no single document is longer than ``seqlen`` the
documents are joined into one stream first, and :func:`calibration_with_info` says so.
"""

from __future__ import annotations

import bz2
import glob
import gzip
import importlib.util
import json
import os
import random
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from besa_common.errors import UserError
from besa_common.fileio import atomic_write_json, atomic_write_text, file_lock

OFFLINE = ("wiki", "news", "novel")
BENCHMARKS = ("wikitext2", "ptb", "c4")
DATASETS = OFFLINE + BENCHMARKS
SPLITS = ("train", "validation", "test")

WIKI_DUMP = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
SENTENCEPIECE_SDIST = "sentencepiece-0.2.3.tar.gz"
MIN_WORDS = 8  # shorter wiki lines are headings, list stubs and template debris
C4_EVAL_DOCS = 1100
C4_EVAL_WINDOWS = 256


def data_root() -> Path:
    """``$BESA_CACHE/data``."""
    from pruning.models import cache_root

    return cache_root() / "data"


def _split_of(i: int) -> str:
    return "validation" if i % 10 == 8 else "test" if i % 10 == 9 else "train"


# --------------------------------------------------------------------------------------------
# Offline corpora: extraction (besa data prepare)
# --------------------------------------------------------------------------------------------


def _gensim_test_data() -> Path:
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.origin:
        raise UserError("the gensim package is not installed (needed for the offline wiki and news corpora)")
    return Path(spec.origin).parent / "test" / "test_data"


def extract_wiki(dump: Path) -> list[str]:
    """Articles (page order) of a MediaWiki XML dump as plain prose; redirects and short lines dropped.

    Each article: its paragraphs joined with ``"\\n"`` (no blank lines inside an article).
    """
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki

    articles: list[str] = []
    with bz2.open(dump, "rb") as fh:
        for _title, text, _pageid in extract_pages(fh):
            if text.lstrip().lower().startswith("#redirect"):
                continue
            lines = []
            for line in filter_wiki(text).split("\n"):
                line = re.sub(r"'{2,}", "", line).strip()  # bold/italic quote markup
                line = re.sub(r"\s+", " ", line)
                if line.startswith("=") or len(line.split()) < MIN_WORDS:
                    continue
                lines.append(line)
            if lines:
                articles.append("\n".join(lines))
    return articles


def extract_news(path: Path) -> list[str]:
    """The Lee background corpus: one news story per line."""
    text = path.read_text(encoding="utf-8", errors="replace")
    return [re.sub(r"\s+", " ", line).strip() for line in text.splitlines() if line.strip()]


def extract_novel(sdist: Path) -> list[str]:
    """The chapters of *Botchan* (``test/botchan.txt`` in the sentencepiece sdist), licence text dropped."""
    with tarfile.open(sdist) as tar:
        member = next((m for m in tar.getmembers() if m.name.endswith("/test/botchan.txt")), None)
        if member is None:
            raise UserError(f"{sdist} has no test/botchan.txt")
        raw = tar.extractfile(member).read().decode("utf-8-sig")
    text = raw.replace("\r\n", "\n")
    end = text.find("End of Project Gutenberg")
    text = text[: end if end > 0 else len(text)]
    parts = re.split(r"\nCHAPTER [IVXL]+\.?\n", text)
    chapters = [p.strip() for p in parts[1:]]  # parts[0] = licence header and translator's note
    # The transcriber's typo list after the last chapter is not prose.
    chapters[-1] = re.split(r"\n\[[A-Z]: ", chapters[-1])[0].strip()
    return [c for c in chapters if c]


def _novel_split(i: int, n: int) -> str:
    return "test" if i == n - 1 else "validation" if i == n - 2 else "train"




def _write_corpus(name: str, docs: list[str], split_of, source: str) -> dict:
    out = data_root() / name
    splits: dict[str, list[str]] = {s: [] for s in SPLITS}
    for i, d in enumerate(docs):
        splits[split_of(i, len(docs))].append(d)
    info = {"name": name, "source": source, "documents": {}, "words": {}}
    for s, ds in splits.items():
        # Documents are separated by ONE blank line; documents contain none themselves.
        atomic_write_text(out / f"{s}.txt", "\n\n".join(ds) + "\n")
        info["documents"][s] = len(ds)
        info["words"][s] = sum(len(d.split()) for d in ds)
    atomic_write_json(out / "meta.json", info)  # written last: marks the corpus complete
    return info


def prepare(names: tuple[str, ...] = OFFLINE, force: bool = False, quiet: bool = False) -> dict[str, dict]:
    """Extract the offline corpora into ``$BESA_CACHE/data/<name>/{train,validation,test}.txt``.

    Idempotent (skips a corpus whose ``meta.json`` exists unless ``force``).  The novel is optional:
    skipped with a note when the sentencepiece sdist was not downloaded.  Returns name -> meta.
    """
    from pruning.models import cache_root

    done: dict[str, dict] = {}
    for name in names:
        meta = data_root() / name / "meta.json"
        with file_lock(data_root() / f".{name}.lock"):
            if meta.is_file() and not force:
                done[name] = json.loads(meta.read_text())
                continue
            if name == "wiki":
                dump = _gensim_test_data() / WIKI_DUMP
                if not dump.is_file():
                    raise UserError(f"the gensim wheel lacks {dump.name}; reinstall gensim==4.4.0")
                info = _write_corpus(name, extract_wiki(dump), lambda i, n: _split_of(i), f"gensim/test/test_data/{WIKI_DUMP}")
            elif name == "news":
                path = _gensim_test_data() / "lee_background.cor"
                if not path.is_file():
                    raise UserError(f"the gensim wheel lacks {path.name}; reinstall gensim==4.4.0")
                info = _write_corpus(name, extract_news(path), lambda i, n: _split_of(i), "gensim/test/test_data/lee_background.cor")
            elif name == "novel":
                sdist = cache_root() / "downloads" / SENTENCEPIECE_SDIST
                if not sdist.is_file():
                    if not quiet:
                        print(f"[besa data] novel skipped: {sdist} not downloaded (scripts/setup.sh fetches it)")
                    continue
                info = _write_corpus(name, extract_novel(sdist), _novel_split, f"{SENTENCEPIECE_SDIST}:test/botchan.txt")
            else:
                raise UserError(f"unknown offline corpus {name!r} (known: {', '.join(OFFLINE)})")
        done[name] = info
        if not quiet:
            w = info["words"]
            print(f"[besa data] {name}: {sum(info['documents'].values())} documents, words train/validation/test = {w['train']}/{w['validation']}/{w['test']} -> {data_root() / name}")
    return done


def offline_documents(name: str, split: str) -> list[str]:
    """Documents of an offline corpus split (extracted on first use if missing)."""
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r} (use one of {', '.join(SPLITS)})")
    path = data_root() / name / f"{split}.txt"
    if not (data_root() / name / "meta.json").is_file():
        prepare((name,), quiet=True)
        if not (data_root() / name / "meta.json").is_file():
            raise UserError(f"corpus {name!r} is not available (run scripts/setup.sh, then besa data prepare)")
    text = path.read_text(encoding="utf-8")
    return [d for d in text.split("\n\n") if d.strip()]


# --------------------------------------------------------------------------------------------
# Benchmarks: WikiText-2, PTB, C4 (HF datasets or local files in native formats)
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Tokenized text for perplexity and calibration
# --------------------------------------------------------------------------------------------


def _check_dataset(dataset: str) -> None:
    if dataset not in DATASETS:
        raise UserError(f"unknown dataset {dataset!r} (known: {', '.join(DATASETS)})")


def _tokenize(tokenizer, text: str) -> torch.Tensor:
    """``(1, L)`` token ids of ``text`` (the tokenizer's own defaults, as the reference does)."""
    from transformers import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "sequence longer than the model maximum" is expected here
    try:
        return tokenizer(text, return_tensors="pt").input_ids
    finally:
        hf_logging.set_verbosity(verbosity)


def eval_text(dataset: str, split: str = "test", data_path: str | os.PathLike | None = None) -> str:
    """The perplexity text of ``dataset`` by its protocol (before truncation)."""
    _check_dataset(dataset)
    if dataset in OFFLINE:
        return "\n\n".join(offline_documents(dataset, split))
    if dataset == "wikitext2":
        return "\n\n".join(wikitext2_lines(split, data_path))
    if dataset == "ptb":
        return " ".join(ptb_sentences(split, data_path))
    return " ".join(c4_documents(split, data_path, limit=C4_EVAL_DOCS))  # c4


def eval_tokens(tokenizer, dataset: str, split: str = "test", data_path: str | os.PathLike | None = None, seqlen: int | None = None) -> torch.Tensor:
    """``(1, L)`` token ids of the perplexity text; C4 is truncated to 256 windows of ``seqlen``."""
    ids = _tokenize(tokenizer, eval_text(dataset, split, data_path))
    if dataset == "c4" and seqlen:
        ids = ids[:, : C4_EVAL_WINDOWS * seqlen]
    return ids


@dataclass(frozen=True)
class CalibrationInfo:
    """How calibration windows were drawn (stored in the run manifest)."""

    dataset: str
    nsamples: int
    seqlen: int
    seed: int
    sampling: str  # "document" (random doc > seqlen, random window) or "stream" (joined text)
    documents: int  # documents the windows were drawn from (1 for a joined stream)
    note: str = ""


def _train_documents(dataset: str, data_path) -> tuple[list[str], str]:
    """Training documents and the joiner used when a stream is needed."""
    if dataset in OFFLINE:
        return offline_documents(dataset, "train"), "\n\n"
    if dataset == "wikitext2":
        return [" ".join(wikitext2_lines("train", data_path))], " "  # the reference joins train with " "
    if dataset == "ptb":
        return [" ".join(ptb_sentences("train", data_path))], " "
    return c4_documents("train", data_path), " "


def calibration_with_info(tokenizer, dataset: str, nsamples: int, seqlen: int, seed: int, data_path: str | os.PathLike | None = None) -> tuple[torch.Tensor, CalibrationInfo]:
    """``nsamples`` windows of ``seqlen`` tokens from ``dataset``'s train split, seeded.

    Reference sampler: repeat {pick a random document; tokenize; accept if longer than seqlen};
    then a random start in ``[0, L - seqlen - 1]``.  Documents are tokenized lazily (C4 has
    hundreds of thousands).  When no document is long enough the documents are joined.
    """
    _check_dataset(dataset)
    if nsamples < 1 or seqlen < 1:
        raise UserError(f"calibration needs nsamples >= 1 and seqlen >= 1 (got {nsamples}, {seqlen})")
    docs, joiner = _train_documents(dataset, data_path)
    rng = random.Random(seed)
    cache: dict[int, torch.Tensor] = {}

    def tok(i: int) -> torch.Tensor:
        if i not in cache:
            cache[i] = _tokenize(tokenizer, docs[i])[0]
        return cache[i]

    sampling, note = ("stream" if len(docs) == 1 else "document"), ""
    long_enough = None
    if 1 < len(docs) <= 5000:  # small corpora: find out up front whether any document qualifies
        long_enough = [i for i in range(len(docs)) if len(tok(i)) > seqlen]
    if long_enough is not None and not long_enough:
        stream = _tokenize(tokenizer, joiner.join(docs))[0]
        if len(stream) <= seqlen:
            raise UserError(f"{dataset} train has only {len(stream)} tokens, fewer than one window of seqlen={seqlen}")
        docs, cache = [joiner.join(docs)], {0: stream}
        sampling = "stream"
        note = f"no {dataset} train document is longer than {seqlen} tokens: windows drawn from the joined documents"
    windows = []
    for _ in range(nsamples):
        if len(docs) == 1:  # a stream: the reference draws only the window start
            ids = tok(0)
            if len(ids) <= seqlen:
                raise UserError(f"{dataset} train has only {len(ids)} tokens, fewer than one window of seqlen={seqlen}")
        else:
            for _attempt in range(100_000):
                i = rng.randint(0, len(docs) - 1)
                ids = tok(i)
                if len(ids) > seqlen:
                    break
            else:
                raise UserError(f"{dataset}: found no train document longer than seqlen={seqlen}")
        start = rng.randint(0, len(ids) - seqlen - 1)
        windows.append(ids[start : start + seqlen])
    info = CalibrationInfo(dataset, nsamples, seqlen, seed, sampling, len(docs), note)
    return torch.stack(windows).long(), info  # (nsamples, seqlen)


def calibration(tokenizer, dataset: str, nsamples: int, seqlen: int, seed: int, data_path: str | os.PathLike | None = None) -> torch.Tensor:
    """``LongTensor (nsamples, seqlen)`` of calibration windows (see :func:`calibration_with_info`)."""
    return calibration_with_info(tokenizer, dataset, nsamples, seqlen, seed, data_path)[0]
