"""``besa eval``: perplexity of a model, optionally with a masks file applied.

    besa eval --model smollm2-135m [--masks DIR/masks.safetensors] [--dataset wiki] [--seqlen 512]
              [--max-windows 40] --json [--out DIR | FILE.json]

``--json`` prints ONE JSON object on stdout: ``ppl``, ``ppl_ci95`` (95 % bootstrap interval over the
windows), ``dataset``, ``split``, ``seqlen``, ``windows``, ``tokens``, ``window_nll`` / ``window_tokens``
(per window), ``windows_sha256`` (which windows), ``sparsity`` (realised over the masked layers; 0.0 without masks),
``model``, ``masks``, ``method``.  ``--out`` writes the same object atomically (``FILE.json``, or
``DIR/eval.json`` for a directory).  The pruned model is rebuilt by :mod:`pruning.runfiles`: masks,
then ``weights.safetensors`` (the kept weights a weight-changing run such as SparseGPT updated; masks
of such a run without it are refused), then ``quant.safetensors`` when it sits next to the masks.

This module parses and checks the command line; the evaluation is :func:`pruning.eval_run.evaluate_run`
(add other evaluations there, and their flags in :func:`add_arguments`).
"""

from __future__ import annotations

import json
import sys

from besa.flagrules import refuse_together
from besa_common.errors import UserError
from besa_common.extras import require
from pruning.data import DATASETS
from pruning.device import resolve_device
from pruning.eval_run import check_eval_out, evaluate_run, write_results
from pruning.model_spec import check_model_spec
from pruning.runfiles import masks_file
from pruning.token_ids import check_vocab, load_token_ids, model_vocab_size
from pruning.zeroshot import add_arguments as add_zeroshot_arguments
from pruning.zeroshot import check_task_data, format_table, parse_tasks

HELP = "perplexity (and zero-shot accuracy) of a model with optional masks"
DEFAULT_SEQLEN = 2048


def add_arguments(parser) -> None:
    parser.add_argument("--model", default="smollm2-135m", help="smollm2-135m (default), a local HF directory or a .gguf file")
    parser.add_argument("--masks", default=None, metavar="FILE", help="masks.safetensors to apply (or its run directory)")
    parser.add_argument("--no-quant", action="store_true", help="ignore a quant.safetensors next to the masks file")
    ppl = parser.add_argument_group("perplexity")
    ppl.add_argument("--dataset", default=None, choices=DATASETS, help="perplexity text (default wiki: the offline Wikipedia test split)")
    ppl.add_argument("--split", default=None, choices=["train", "validation", "test"], help="split of the dataset (default test)")
    ppl.add_argument("--data-path", default=None, help="local files for wikitext2/ptb/c4 in their native formats")
    ppl.add_argument("--seqlen", type=int, default=None, help=f"window length in tokens (default {DEFAULT_SEQLEN}, the paper's)")
    ppl.add_argument(
        "--eval-ids",
        default=None,
        metavar="FILE.npy",
        help="exact evaluation windows: an integer .npy array [w, T] of token ids (e.g. another tool's); replaces --dataset",
    )
    ppl.add_argument("--max-windows", type=int, default=None, help="evaluate at most this many windows (from the start)")
    ppl.add_argument("--no-ppl", action="store_true", help="skip perplexity")
    run = parser.add_argument_group("execution")
    run.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="compute device")
    run.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32", help="compute dtype (16-bit = autocast)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    out = parser.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    out.add_argument("--out", default=None, metavar="DIR|FILE.json", help="also write the JSON object (FILE.json, or DIR/eval.json)")
    # Other evaluations (zero-shot) add their flags below this line.
    add_zeroshot_arguments(parser)  # --tasks, --task-data, --zs-batch-size, --limit


def _eval_source(args):
    """Resolve --seqlen, or load and check --eval-ids (dtype, shape, vocabulary: before the model
    load); then ``args.seqlen`` = the file's T.  Returns ``(ids [w, T], record)`` or None."""
    if args.eval_ids is None:
        args.dataset = args.dataset or "wiki"
        args.seqlen = DEFAULT_SEQLEN if args.seqlen is None else args.seqlen
        if args.seqlen < 2:
            raise UserError(f"--seqlen must be at least 2, got {args.seqlen}")
        return None
    refuse_together(args, "--eval-ids", "--dataset", "--data-path", "--split", why="the file holds the evaluation tokens")
    ids, record = load_token_ids(args.eval_ids, "--eval-ids")
    if args.seqlen is not None and args.seqlen != ids.shape[1]:
        raise UserError(f"--seqlen {args.seqlen} contradicts --eval-ids {args.eval_ids} of shape {list(ids.shape)}; drop --seqlen")
    args.seqlen = int(ids.shape[1])
    check_vocab(ids, model_vocab_size(args.model), "--eval-ids", args.eval_ids)
    return ids, record


def compute(args) -> dict:
    """Check the command line (everything before the slow model load), then evaluate."""
    eval_ids = _eval_source(args)
    if args.max_windows is not None and args.max_windows < 1:
        raise UserError(f"--max-windows must be positive, got {args.max_windows}")
    device = resolve_device(args.device)
    masks = None if args.masks is None else masks_file(args.masks)
    check_eval_out(args.out, masks)  # a bad --out must not cost the evaluation
    check_model_spec(args.model)
    tasks = None
    if args.tasks:
        require("eval --tasks", "zeroshot")
        tasks = parse_tasks(args.tasks)
        check_task_data(tasks, args.task_data)  # bad task names / files fail before the model load
    return evaluate_run(
        args.model,
        masks,
        quant=not args.no_quant,
        device=device,
        dtype=args.dtype,
        progress=not args.no_progress,
        ppl=not args.no_ppl,
        dataset=args.dataset,
        split=args.split or "test",
        data_path=args.data_path,
        seqlen=args.seqlen,
        eval_ids=eval_ids,
        max_windows=args.max_windows,
        tasks=tasks,
        task_data=args.task_data,
        zs_batch_size=args.zs_batch_size,
        limit=args.limit,
        zs_seed=args.zs_seed,
        zs_scorer=args.zs_scorer,
    )


def emit(results: dict, as_json: bool, out: str | None) -> None:
    if out is not None:
        write_results(results, out)
    if as_json:
        print(json.dumps(results, sort_keys=True))
    elif "ppl" in results:
        text = f"{results['dataset']} {results['split']}" if results.get("dataset") else f"ids {results['eval_ids']['path']}"
        ci = results.get("ppl_ci95")
        ci_text = f" [95% CI {ci[0]:.3f}–{ci[1]:.3f}]" if ci else ""
        print(f"ppl {results['ppl']:.3f}{ci_text}  ({text}, seqlen {results['seqlen']}, {results['windows']} windows, sparsity {results['sparsity']:.4f})")
    if not as_json and "tasks" in results:
        print(format_table(results["tasks"]))
    sys.stdout.flush()


def run(args) -> int:
    emit(compute(args), args.json, args.out)
    return 0
