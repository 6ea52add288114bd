"""The offline corpora (``besa data prepare``): extraction from registry packages, splits, reading.

* ``wiki``  — English Wikipedia prose extracted from the gensim wheel's test dump: ~106 articles,
  ~450 K words; split BY ARTICLE in page order: article ``i`` goes to validation when
  ``i % 10 == 8``, test when ``i % 10 == 9``, train otherwise (deterministic).
* ``news``  — gensim's ``lee_background.cor`` (300 news stories, one per line), same rule per story.
* ``novel`` — *Botchan* from the sentencepiece sdist (optional): chapters I–IX train, X validation,
  XI test.

Written to ``$BESA_CACHE/data/<name>/{train,validation,test}.txt`` (documents separated by one blank
line) + ``meta.json`` (written last: it marks the corpus complete).
"""

from __future__ import annotations

import bz2
import importlib.util
import json
import re
import tarfile
from pathlib import Path

from besa_common.errors import UserError
from besa_common.fileio import atomic_write_json, atomic_write_text, file_lock
from pruning.cache import cache_root

OFFLINE = ("wiki", "news", "novel")
SPLITS = ("train", "validation", "test")

WIKI_DUMP = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
SENTENCEPIECE_SDIST = "sentencepiece-0.2.3.tar.gz"
MIN_WORDS = 8  # shorter wiki lines are headings, list stubs and template debris


def data_root() -> Path:
    """``$BESA_CACHE/data``."""
    return cache_root() / "data"


def _split_of(i: int) -> str:
    return "validation" if i % 10 == 8 else "test" if i % 10 == 9 else "train"


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
            print(
                f"[besa data] {name}: {sum(info['documents'].values())} documents, words train/validation/test = {w['train']}/{w['validation']}/{w['test']} -> {data_root() / name}"
            )
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


def corpus_info(names: tuple[str, ...] = OFFLINE) -> dict[str, dict | None]:
    """name -> the ``meta.json`` of each prepared corpus (None when it is not prepared): ``besa data info``."""
    out: dict[str, dict | None] = {}
    for n in names:
        meta = data_root() / n / "meta.json"
        out[n] = json.loads(meta.read_text()) if meta.is_file() else None
    return out
