"""Data: loaders on small local files in the real formats, protocols, calibration sampling, offline corpora."""

import gzip
import io
import json
import tarfile

import pytest
import torch

from besa_common.errors import UserError
from pruning import data
from tests.pruning.helpers import CharTokenizer, WordTokenizer

WT2_TEST = " \n = Robert Boulter = \n \n Robert Boulter is an English film , television and theatre actor . \n \n = = Career = = \n"


@pytest.fixture
def wt2_dir(tmp_path):
    d = tmp_path / "wikitext-2-raw"
    d.mkdir()
    (d / "wiki.test.raw").write_text(WT2_TEST, encoding="utf-8")
    (d / "wiki.valid.raw").write_text(" \n = Valid = \n", encoding="utf-8")
    train = "".join(f" The article number {i} has some words in it . \n" for i in range(50))
    (d / "wiki.train.raw").write_text(train, encoding="utf-8")
    return d


def test_wikitext2_raw_files_protocol(wt2_dir):
    lines = data.wikitext2_lines("test", wt2_dir)
    assert lines == WT2_TEST.splitlines(keepends=True)
    text = data.eval_text("wikitext2", "test", wt2_dir)
    assert text == "\n\n".join(lines)  # the reference joins test rows with "\n\n"
    ids = data.eval_tokens(CharTokenizer(), "wikitext2", "test", wt2_dir)
    assert ids.shape == (1, len(text))


def test_wikitext2_parquet_layout(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    sub = tmp_path / "wikitext-2-raw-v1"
    sub.mkdir()
    rows = ["", " = Robert Boulter = \n", "", " Robert Boulter is an actor . \n"]
    pq.write_table(pa.table({"text": rows}), sub / "test-00000-of-00001.parquet")
    assert data.wikitext2_lines("test", tmp_path) == rows
    assert data.eval_text("wikitext2", "test", tmp_path) == "\n\n".join(rows)


def test_ptb_native_files_protocol(tmp_path):
    (tmp_path / "ptb.test.txt").write_text(" no it was n't black monday \n but while the new york stock exchange did n't fall apart \n", encoding="utf-8")
    (tmp_path / "ptb.train.txt").write_text("".join(f" sentence {i} with <unk> and N tokens \n" for i in range(40)), encoding="utf-8")
    sents = data.ptb_sentences("test", tmp_path)
    assert sents == ["no it was n't black monday", "but while the new york stock exchange did n't fall apart"]
    assert data.eval_text("ptb", "test", tmp_path) == " ".join(sents)
    calib, info = data.calibration_with_info(WordTokenizer(), "ptb", 3, 5, seed=0, data_path=tmp_path)
    assert calib.shape == (3, 5) and info.sampling == "stream"


def _write_c4(path, docs):
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for i, t in enumerate(docs):
            fh.write(json.dumps({"text": t, "timestamp": "2019-04-25T12:57:54Z", "url": f"https://example.com/{i}"}) + "\n")


def test_c4_json_gz_protocol_and_document_sampling(tmp_path):
    en = tmp_path / "en"
    en.mkdir()
    val = [f"doc{i}" for i in range(1200)]
    _write_c4(en / "c4-validation.00000-of-00008.json.gz", val)
    short = ["tiny"] * 30
    long = ["".join(chr(65 + (i + j) % 26) for j in range(40)) for i in range(3)]
    _write_c4(en / "c4-train.00000-of-01024.json.gz", short + long)
    text = data.eval_text("c4", "validation", tmp_path)
    assert text == " ".join(val[:1100])  # first 1100 validation documents joined with " "
    ids = data.eval_tokens(CharTokenizer(), "c4", "validation", tmp_path, seqlen=4)
    assert ids.shape == (1, 256 * 4)  # truncated to 256 windows
    calib, info = data.calibration_with_info(CharTokenizer(), "c4", 8, 10, seed=3, data_path=tmp_path)
    assert info.sampling == "document" and calib.shape == (8, 10)
    for row in calib:
        s = "".join(chr(int(c)) for c in row)
        assert any(s in d for d in long)  # only documents longer than seqlen are used


def test_calibration_is_seeded(wt2_dir):
    tok = CharTokenizer()
    a = data.calibration(tok, "wikitext2", 4, 16, seed=0, data_path=wt2_dir)
    b = data.calibration(tok, "wikitext2", 4, 16, seed=0, data_path=wt2_dir)
    c = data.calibration(tok, "wikitext2", 4, 16, seed=1, data_path=wt2_dir)
    assert a.dtype == torch.long and a.shape == (4, 16)
    assert torch.equal(a, b) and not torch.equal(a, c)
    joined = " ".join(data.wikitext2_lines("train", wt2_dir))  # the reference joins train with " "
    for row in a:
        assert "".join(chr(int(x)) for x in row) in joined


def test_loader_errors(tmp_path):
    with pytest.raises(UserError, match="unknown dataset"):
        data.eval_text("imagenet")
    with pytest.raises(UserError, match="not found"):
        data.wikitext2_lines("test", tmp_path)
    with pytest.raises(UserError, match="not found"):
        data.ptb_sentences("test", tmp_path)
    (tmp_path / "c4-validation.00000-of-00008.json.gz").write_bytes(b"not gzip")
    with pytest.raises(UserError, match="JSON-lines"):
        data.c4_documents("validation", tmp_path)
    with pytest.raises(UserError):
        data.calibration(CharTokenizer(), "wikitext2", 0, 16, 0, tmp_path)


def test_novel_extraction_from_sdist_layout(tmp_path):
    body = "\ufeffProject Gutenberg's Botchan\r\nlicence text\r\n"
    for i, roman in enumerate(["I", "II.", "III"]):
        body += f"CHAPTER {roman}\r\nChapter {i} line one.\r\nChapter {i} line two.\r\n"
    body += "[A: typo]\r\n[B: another]\r\nEnd of Project Gutenberg's Botchan\r\nlicence again\r\n"
    sdist = tmp_path / "sentencepiece-0.2.3.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        raw = body.encode("utf-8")
        info = tarfile.TarInfo("sentencepiece-0.2.3/test/botchan.txt")
        info.size = len(raw)
        tar.addfile(info, io.BytesIO(raw))
    chapters = data.extract_novel(sdist)
    assert chapters == [f"Chapter {i} line one.\nChapter {i} line two." for i in range(3)]


def test_offline_corpora_prepare_deterministic(tmp_path, monkeypatch):
    monkeypatch.setenv("BESA_CACHE", str(tmp_path / "cache"))
    done = data.prepare(("wiki", "news", "novel"), quiet=True)
    assert "novel" not in done  # optional: the sdist was not downloaded into this cache
    wiki = done["wiki"]
    assert sum(wiki["documents"].values()) == 106  # redirects dropped
    assert wiki["documents"] == {"train": 86, "validation": 10, "test": 10}  # article i: i % 10 == 8 -> validation, 9 -> test
    assert wiki["words"]["train"] > 300_000
    test_docs = data.offline_documents("wiki", "test")
    assert len(test_docs) == 10 and all("\n\n" not in d for d in test_docs)
    assert data.eval_text("wiki") == "\n\n".join(test_docs)
    first = (tmp_path / "cache" / "data" / "wiki" / "test.txt").read_bytes()
    data.prepare(("wiki",), force=True, quiet=True)
    assert (tmp_path / "cache" / "data" / "wiki" / "test.txt").read_bytes() == first
    assert done["news"]["documents"] == {"train": 240, "validation": 30, "test": 30}
    # Word-level windows of 50 words: plenty of articles are longer -> document sampling.
    calib, info = data.calibration_with_info(WordTokenizer(), "wiki", 4, 50, seed=0)
    assert info.sampling == "document" and calib.shape == (4, 50)
    # Longer than any news story -> documents are joined and the info says so.
    calib, info = data.calibration_with_info(WordTokenizer(), "news", 2, 3000, seed=0)
    assert info.sampling == "stream" and "joined" in info.note


def test_hf_datasets_path_uses_reference_names(monkeypatch):
    """Without --data-path the loaders ask `datasets` for the reference's dataset names and splits."""
    import datasets

    calls = []

    def fake_load(*args, **kwargs):
        calls.append((args, kwargs))
        if args[0] == "wikitext":
            return {"text": [" = A = \n", " b \n"]}
        if args[0] == "ptb_text_only":
            return {"sentence": ["a b", "c d"]}
        return {"text": ["c4 doc one", "c4 doc two"]}

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    assert data.eval_text("wikitext2") == " = A = \n\n\n b \n"
    assert data.eval_text("ptb") == "a b c d"
    assert data.eval_text("c4") == "c4 doc one c4 doc two"
    assert calls[0] == (("wikitext", "wikitext-2-raw-v1"), {"split": "test"})
    assert calls[1] == (("ptb_text_only", "penn_treebank"), {"split": "test"})
    assert calls[2] == (("allenai/c4",), {"data_files": {"validation": "en/c4-validation.00000-of-00008.json.gz"}, "split": "validation"})

    def offline(*a, **k):
        raise ConnectionError("no network\nsecond line")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(UserError, match="--data-path") as exc:
        data.eval_text("wikitext2")
    assert "\n" not in str(exc.value)
