"""``besa eval``'s work as a library call: rebuild the (pruned) model from its run directory
(:func:`pruning.runfiles.load_pruned`), perplexity on a dataset split or on exact token windows,
zero-shot tasks; the results dict and its file (``FILE.json`` or ``DIR/eval.json``).

Everything here takes explicit parameters; ``besa/commands/eval.py`` parses and checks the command
line, calls :func:`check_eval_out` and :func:`evaluate_run`, then :func:`write_results` and prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from besa_common.bootstrap import ppl_ci
from besa_common.bootstrap import settings as bootstrap_settings
from besa_common.fileio import atomic_write_json, check_output_path
from pruning.data import eval_tokens
from pruning.device import AUTOCAST_DTYPES
from pruning.evaluate import perplexity
from pruning.runfiles import load_pruned
from pruning.zeroshot import run_tasks
from pruning.zeroshot.subset import SUBSET_SEED


def eval_json_path(out: str | Path) -> Path:
    """``--out FILE.json`` -> that file; ``--out DIR`` -> ``DIR/eval.json``."""
    p = Path(out)
    return p if p.suffix == ".json" else p / "eval.json"


def check_eval_out(out: str | Path | None, masks: Path | None) -> None:
    """``--out FILE.json`` or ``DIR`` (-> DIR/eval.json): writable, right kind, not the masks file."""
    if out is None:
        return
    p = Path(out)
    if p.suffix == ".json":
        check_output_path(p, kind="file", inputs=[masks])
    else:
        check_output_path(p)
        check_output_path(p / "eval.json", kind="file")


def evaluate_run(
    model_spec: str,
    masks: Path | None,
    *,
    quant: bool = True,
    device: torch.device,
    dtype: str = "float32",
    progress: bool = True,
    ppl: bool = True,
    dataset: str = "wiki",
    split: str = "test",
    data_path: str | None = None,
    seqlen: int = 2048,
    eval_ids: tuple[np.ndarray, dict[str, Any]] | None = None,
    max_windows: int | None = None,
    tasks: list[str] | None = None,
    task_data: Path | None = None,
    zs_batch_size: int = 8,
    limit: int | None = None,
    zs_seed: int = SUBSET_SEED,
    zs_scorer: str = "hflm",
) -> dict:
    """The results dict of one evaluation: ``model``, ``masks``, ``method``, ``sparsity``, ``weights``,
    ``quant``; with ``ppl`` also ``ppl``, ``ppl_ci95`` ([low, high]: 95 % percentile bootstrap over the
    windows, :func:`besa_common.bootstrap.ppl_ci`; None with one window), ``ppl_ci`` (its settings),
    ``nll``, ``dataset``, ``split`` (or ``eval_ids``), ``seqlen``, ``windows``, ``tokens``,
    ``windows_sha256``, ``window_nll`` and ``window_tokens`` (per window: :func:`pruning.evaluate.perplexity`);
    with ``tasks`` also ``tasks`` (:func:`pruning.zeroshot.run_tasks`, with per-example correctness for paired
    comparisons; ``limit`` = the seeded subset of ``zs_seed``, ``zs_scorer`` as there).

    ``masks``: the run's masks file (None = the dense model); ``quant``: apply the
    ``quant.safetensors`` beside it.  Perplexity text: ``eval_ids`` = ``(ids [w, T], record)``, each
    row one window (then ``seqlen`` must be T), else ``dataset``'s ``split`` in windows of
    ``seqlen``, at most ``max_windows``.  ``dtype``: a :data:`pruning.device.AUTOCAST_DTYPES` name."""
    model, tokenizer, info = load_pruned(model_spec, masks, quant=quant)
    results: dict = {
        "model": str(model_spec),
        "masks": None if masks is None else str(masks),
        "method": info["method"] or ("dense" if masks is None else None),
        "sparsity": info["sparsity"],
        "weights": info["weights"],
        "quant": info["quant"],
    }
    if ppl:
        if eval_ids is not None:  # each row is one window: flattened, seqlen = T gives exactly those windows
            ids, record = eval_ids
            tokens = torch.from_numpy(ids).reshape(1, -1)
            where = {"dataset": None, "split": None, "eval_ids": record}
        else:
            tokens = eval_tokens(tokenizer, dataset, split, data_path, seqlen=seqlen)
            where = {"dataset": dataset, "split": split}
        res = perplexity(model, tokens, seqlen, max_windows, device, AUTOCAST_DTYPES[dtype], progress=progress)
        ci = ppl_ci(res["window_nll"], res["window_tokens"])
        results.update(
            {
                "ppl": res["ppl"],
                "ppl_ci95": None if ci is None else list(ci),
                "ppl_ci": bootstrap_settings(),
                "nll": res["nll"],
                **where,
                "seqlen": res["seqlen"],
                "windows": res["windows"],
                "tokens": res["tokens"],
                "windows_sha256": res["windows_sha256"],
                "window_nll": res["window_nll"],
                "window_tokens": res["window_tokens"],
            }
        )
    # Other evaluations (zero-shot) add their results here, e.g. results["zeroshot"] = ...
    if tasks:
        zs = {"per_example": True, "device": device, "seed": zs_seed, "scorer": zs_scorer}  # per-example rows: paired comparisons
        results["tasks"] = run_tasks(model, tokenizer, tasks, task_data, zs_batch_size, limit, **zs)
    return results


def write_results(results: dict, out: str | Path) -> Path:
    """Write ``results`` atomically to :func:`eval_json_path` of ``out``; return that path."""
    path = eval_json_path(out)
    atomic_write_json(path, results)
    return path
