"""Tokenized text for perplexity and calibration, by the protocols of ``docs/besa.md`` (section 6).

Perplexity text: WikiText-2 test joined with ``"\\n\\n"``; PTB test sentences joined with ``" "``;
C4 = first 1100 validation documents joined with ``" "``, truncated to 256 windows; the offline
corpora join their documents with ``"\\n\\n"``.  Calibration follows the reference sampler: pick a
random training document whose tokenized length exceeds ``seqlen``, take a random ``seqlen`` window
(C4 and our document corpora); WikiText-2 and PTB have no documents in the reference either: windows
come from the joined train text.  Our offline corpora are small: when no single document is longer
than ``seqlen`` the documents are joined into one stream first, and :func:`calibration_with_info`
says so.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import torch

from besa_common.errors import UserError
from pruning.data.benchmarks import BENCHMARKS, c4_documents, ptb_sentences, wikitext2_lines
from pruning.data.corpora import OFFLINE, offline_documents

DATASETS = OFFLINE + BENCHMARKS
C4_EVAL_DOCS = 1100
C4_EVAL_WINDOWS = 256


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


def calibration_with_info(
    tokenizer, dataset: str, nsamples: int, seqlen: int, seed: int, data_path: str | os.PathLike | None = None
) -> tuple[torch.Tensor, CalibrationInfo]:
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
