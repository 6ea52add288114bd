"""``besa eval``: perplexity of a model, optionally with a masks file applied.

    besa eval --model smollm2-135m [--masks DIR/masks.safetensors] [--dataset wiki] [--seqlen 512]
              [--max-windows 40] --json [--out DIR | FILE.json]

``--json`` prints ONE JSON object on stdout: ``ppl``, ``dataset``, ``split``, ``seqlen``,
``windows``, ``tokens``, ``sparsity`` (realised over the masked layers; 0.0 without masks),
``model``, ``masks``, ``method``.  ``--out`` writes the same object atomically (``FILE.json``, or
``DIR/eval.json`` for a directory).  The pruned model is rebuilt by :mod:`pruning.runfiles`: masks,
then ``weights.safetensors`` (the kept weights a weight-changing run such as SparseGPT updated; masks
of such a run without it are refused), then ``quant.safetensors`` when it sits next to the masks.

Structure (so other evaluations can be added with a small edit): :func:`add_arguments` builds the
parser, :func:`prepare_model` loads and masks the model, :func:`compute` returns the results dict,
:func:`emit` prints/writes it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from besa_common.errors import UserError

HELP = "perplexity (and zero-shot accuracy) of a model with optional masks"
DEFAULT_SEQLEN = 2048


def add_arguments(parser) -> None:
    from pruning.data import DATASETS

    parser.add_argument("--model", default="smollm2-135m", help="smollm2-135m (default), a local HF directory or a .gguf file")
    parser.add_argument("--masks", default=None, metavar="FILE", help="masks.safetensors to apply (or its run directory)")
    parser.add_argument("--no-quant", action="store_true", help="ignore a quant.safetensors next to the masks file")
    ppl = parser.add_argument_group("perplexity")
    ppl.add_argument("--dataset", default="wiki", choices=DATASETS, help="perplexity text (default wiki: the offline Wikipedia test split)")
    ppl.add_argument("--split", default="test", choices=["train", "validation", "test"], help="split of the dataset (default test)")
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
    from pruning.zeroshot import add_arguments as add_zeroshot_arguments

    add_zeroshot_arguments(parser)  # --tasks, --task-data, --zs-batch-size, --limit


def _masks_path(text: str | None) -> Path | None:
    if text is None:
        return None
    from pruning.runfiles import masks_file

    return masks_file(text)


def prepare_model(model_spec: str, masks: Path | None, use_quant: bool = True):
    """Load the model and rebuild the pruned one from its run directory (``pruning.runfiles``):
    masks, the updated weights of a weight-changing run, quantization saved next to them.

    Returns ``(model, tokenizer, info)``; ``info`` has ``sparsity`` (realised over the masked layers),
    ``method``, ``weights`` and ``quant``.
    """
    from pruning.models import load_model

    run = None
    if masks is not None:
        from pruning.runfiles import open_run

        run = open_run(masks, quant=use_quant)  # validate before the slow model load
    model, tokenizer = load_model(model_spec)
    info = {"sparsity": 0.0, "method": None, "weights": None, "quant": None}
    if run is not None:
        from pruning.runfiles import apply_run

        info.update(apply_run(model, run))
    return model, tokenizer, info


def compute(args) -> dict:
    """The results dict of one ``besa eval`` invocation."""
    from pruning.data import eval_tokens
    from pruning.driver import DTYPES, resolve_device
    from pruning.evaluate import perplexity

    eval_ids = _eval_source(args)
    if args.max_windows is not None and args.max_windows < 1:
        raise UserError(f"--max-windows must be positive, got {args.max_windows}")
    device = resolve_device(args.device)
    masks = _masks_path(args.masks)
    check_eval_out(args.out, masks)  # a bad --out must not cost the evaluation
    from pruning.models import check_model_spec

    check_model_spec(args.model)
    if args.tasks:
        from besa_common.extras import require
        from pruning.zeroshot import check_task_data, parse_tasks

        require("eval --tasks", "zeroshot")
        check_task_data(parse_tasks(args.tasks), args.task_data)  # bad task names / files fail before the model load
    model, tokenizer, info = prepare_model(args.model, masks, use_quant=not args.no_quant)
    results: dict = {
        "model": str(args.model),
        "masks": None if masks is None else str(masks),
        "method": info["method"] or ("dense" if masks is None else None),
        "sparsity": info["sparsity"],
        "weights": info["weights"],
        "quant": info["quant"],
    }
    if not args.no_ppl:
        if eval_ids is not None:  # each row is one window: flattened, seqlen = T gives exactly those windows
            import torch

            ids, record = eval_ids
            tokens = torch.from_numpy(ids).reshape(1, -1)
            where = {"dataset": None, "split": None, "eval_ids": record}
        else:
            tokens = eval_tokens(tokenizer, args.dataset, args.split, args.data_path, seqlen=args.seqlen)
            where = {"dataset": args.dataset, "split": args.split}
        res = perplexity(model, tokens, args.seqlen, args.max_windows, device, DTYPES[args.dtype], progress=not args.no_progress)
        results.update({"ppl": res["ppl"], "nll": res["nll"], **where, "seqlen": res["seqlen"], "windows": res["windows"], "tokens": res["tokens"]})
    # Other evaluations (zero-shot) add their results here, e.g. results["zeroshot"] = ...
    if args.tasks:
        from pruning.zeroshot import parse_tasks, run_tasks

        zs = {"per_example": True, "device": device, "seed": args.zs_seed, "scorer": args.zs_scorer}  # per-example rows: paired comparisons
        results["tasks"] = run_tasks(model, tokenizer, parse_tasks(args.tasks), args.task_data, args.zs_batch_size, args.limit, **zs)
    return results


def _eval_json(out: str) -> Path:
    p = Path(out)
    return p if p.suffix == ".json" else p / "eval.json"


def check_eval_out(out: str | None, masks: Path | None) -> None:
    """``--out FILE.json`` or ``DIR`` (-> DIR/eval.json): writable, right kind, not the masks file."""
    from besa_common.fileio import check_output_path

    if out is None:
        return
    p = Path(out)
    if p.suffix == ".json":
        check_output_path(p, kind="file", inputs=[masks])
    else:
        check_output_path(p)
        check_output_path(p / "eval.json", kind="file")


def _eval_source(args):
    """Resolve --seqlen, or load and check --eval-ids (dtype, shape, vocabulary: before the model
    load); then ``args.seqlen`` = the file's T.  Returns ``(ids [w, T], record)`` or None."""
    if args.eval_ids is None:
        args.seqlen = DEFAULT_SEQLEN if args.seqlen is None else args.seqlen
        if args.seqlen < 2:
            raise UserError(f"--seqlen must be at least 2, got {args.seqlen}")
        return None
    from pruning.token_ids import check_vocab, load_token_ids, model_vocab_size

    if args.data_path is not None:
        raise UserError("--data-path and --eval-ids exclude each other (the file holds the evaluation tokens)")
    ids, record = load_token_ids(args.eval_ids, "--eval-ids")
    if args.seqlen is not None and args.seqlen != ids.shape[1]:
        raise UserError(f"--seqlen {args.seqlen} contradicts --eval-ids {args.eval_ids} of shape {list(ids.shape)}; drop --seqlen")
    args.seqlen = int(ids.shape[1])
    check_vocab(ids, model_vocab_size(args.model), "--eval-ids", args.eval_ids)
    return ids, record


def emit(results: dict, as_json: bool, out: str | None) -> None:
    from besa_common.fileio import atomic_write_json

    if out is not None:
        atomic_write_json(_eval_json(out), results)
    if as_json:
        print(json.dumps(results, sort_keys=True))
    elif "ppl" in results:
        text = f"{results['dataset']} {results['split']}" if results.get("dataset") else f"ids {results['eval_ids']['path']}"
        print(f"ppl {results['ppl']:.3f}  ({text}, seqlen {results['seqlen']}, {results['windows']} windows, sparsity {results['sparsity']:.4f})")
    if not as_json and "tasks" in results:
        from pruning.zeroshot import format_table

        print(format_table(results["tasks"]))
    sys.stdout.flush()


def run(args) -> int:
    emit(compute(args), args.json, args.out)
    return 0
