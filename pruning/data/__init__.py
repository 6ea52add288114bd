"""Text for calibration and perplexity: offline corpora and the standard benchmark loaders.

Three modules, one job each: :mod:`~pruning.data.corpora` (extracting the offline corpora),
:mod:`~pruning.data.benchmarks` (WikiText-2 / PTB / C4 loaders), :mod:`~pruning.data.tokens`
(perplexity text and calibration windows, the only one that needs torch).  Their public names are
re-exported here.

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

from pruning.data.benchmarks import BENCHMARKS, c4_documents, ptb_sentences, wikitext2_lines
from pruning.data.corpora import (
    OFFLINE,
    SPLITS,
    corpus_info,
    data_root,
    extract_news,
    extract_novel,
    extract_wiki,
    offline_documents,
    prepare,
)
from pruning.data.tokens import (
    C4_EVAL_DOCS,
    C4_EVAL_WINDOWS,
    DATASETS,
    CalibrationInfo,
    calibration,
    calibration_with_info,
    eval_text,
    eval_tokens,
)

__all__ = [
    "BENCHMARKS",
    "C4_EVAL_DOCS",
    "C4_EVAL_WINDOWS",
    "DATASETS",
    "OFFLINE",
    "SPLITS",
    "CalibrationInfo",
    "c4_documents",
    "corpus_info",
    "calibration",
    "calibration_with_info",
    "data_root",
    "eval_text",
    "eval_tokens",
    "extract_news",
    "extract_novel",
    "extract_wiki",
    "offline_documents",
    "prepare",
    "ptb_sentences",
    "wikitext2_lines",
]
