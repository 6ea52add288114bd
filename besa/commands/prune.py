"""``besa prune``: prune a model block by block and write the run directory.

    besa prune --model smollm2-135m --method wanda --sparsity 0.5 [--pattern 2:4] --out DIR

writes ``DIR/masks.safetensors``, ``DIR/manifest.json``, ``DIR/allocation.json`` (and
``DIR/quant.safetensors`` with ``--wbits``).  Defaults are the papers': 128 calibration windows of
2048 tokens, seed 0 — slow on a CPU; ``--nsamples 64 --seqlen 512`` is a practical CPU setting.
Rerunning the same command after an interruption resumes at the first unfinished block.
"""

from __future__ import annotations

from pathlib import Path

import pruning.methods  # noqa: F401  (fills the registry)
from besa_common.errors import UserError
from besa_common.fileio import check_output_path, dir_lock
from besa_common.sparsity import check_target, nm_sparsity, parse_nm
from pruning.data import DATASETS
from pruning.driver import DriverConfig
from pruning.methods.base import METHODS
from pruning.model_spec import check_model_spec
from pruning.prune_run import prune_to_dir, read_layer_sparsity
from pruning.quant import QuantSpec
from pruning.token_ids import check_vocab, load_token_ids, model_vocab_size
from pruning.weight_update import WeightUpdateConfig

HELP = "prune a model block by block and write DIR/masks.safetensors"
DEFAULT_NSAMPLES, DEFAULT_SEQLEN, DEFAULT_DATASET = 128, 2048, "wiki"
MAX_NSAMPLES = 1 << 16  # calibration windows (the papers use 128)
MAX_SEQLEN = 1 << 17  # tokens per window
MAX_SEED = (1 << 63) - 1


def parse_pattern(text: str | None) -> tuple[int, int] | None:
    """``"2:4"`` -> ``(2, 4)``: at most N of every M consecutive input weights KEPT (the N:M
    literature's and the simulator's convention; implied sparsity 1 - N/M).  None stays None."""
    return None if text is None else parse_nm(text, "--pattern")


def add_arguments(parser) -> None:
    parser.add_argument("--model", default="smollm2-135m", help="smollm2-135m (default), a local HF directory or a .gguf file")
    parser.add_argument("--method", required=True, metavar="METHOD", help=f"pruning method: {', '.join(sorted(METHODS))}")
    parser.add_argument("--sparsity", type=float, default=None, help="fraction of weights pruned per layer, in (0, 1); default 0.5 (1 - N/M with --pattern)")
    parser.add_argument(
        "--pattern", default=None, metavar="N:M", help="semi-structured N:M: at most N of every M consecutive input weights KEPT (2:4, 4:8; 1:4 = 75%% sparse)"
    )
    parser.add_argument("--layer-sparsity", default=None, metavar="FILE", help="JSON {HF module name: sparsity} overriding --sparsity per layer")
    parser.add_argument("--out", required=True, metavar="DIR", help="run directory to write")
    cal = parser.add_argument_group("calibration")
    cal.add_argument("--calib-dataset", default=None, choices=DATASETS, help="calibration text (train split); default wiki (offline)")
    cal.add_argument("--data-path", default=None, help="local files for wikitext2/ptb/c4 in their native formats")
    cal.add_argument("--nsamples", type=int, default=None, help=f"calibration windows (default {DEFAULT_NSAMPLES}, the paper's)")
    cal.add_argument("--seqlen", type=int, default=None, help=f"tokens per window (default {DEFAULT_SEQLEN}, the paper's)")
    cal.add_argument(
        "--calib-ids",
        default=None,
        metavar="FILE.npy",
        help="exact calibration tokens: an integer .npy array [n, T] of token ids (e.g. another tool's); replaces the sampler",
    )
    cal.add_argument("--seed", type=int, default=0, help="calibration sampling and method seed")
    run = parser.add_argument_group("execution")
    run.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="compute device; with cuda only one block is on the GPU at a time")
    run.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32", help="compute dtype (16-bit = autocast; weights stay fp32)")
    run.add_argument(
        "--target",
        choices=["pruned", "dense"],
        default="pruned",
        help="reconstruction targets for methods that use them: dense block on pruned inputs (default) or the dense trajectory",
    )
    run.add_argument("--offload-acts", action="store_true", help="keep activation buffers on CPU (saves GPU memory)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--save-model", default=None, metavar="DIR", help="also save the pruned model as a HF directory (safetensors + tokenizer)")
    run.add_argument("--wait", action="store_true", help="if another writer holds --out, wait for it instead of failing at once")
    wu = parser.add_argument_group("weight update (after the masks are chosen; pruning/weight_update.py)")
    wu.add_argument(
        "--weight-update",
        choices=["none", "obs", "admm"],
        default="none",
        help="with each method's masks fixed, move the kept weights to minimise ||X W0^T - X W^T||^2 on the calibration inputs: "
        "obs = SparseGPT's sequential OBS update, admm = ADMM (Boza 2024); default none",
    )
    wu.add_argument("--update-damp", type=float, default=0.01, help="ridge λ of the update (admm: λ·diag(H); obs: λ·mean diag, SparseGPT's); default 0.01")
    wu.add_argument("--admm-iters", type=int, default=8, help="ADMM iterations (default 8)")
    wu.add_argument(
        "--admm-reselect",
        type=int,
        default=0,
        metavar="N",
        help="admm: N first iterations re-choose WHICH weights each row (n:m group) keeps, same count per row/group (default 0: masks fixed)",
    )
    wu.add_argument("--admm-rho", type=float, default=0.5, help="ADMM penalty ρ in diag-normalised coordinates, constant (default 0.5)")
    wu.add_argument(
        "--admm-exact",
        action="store_true",
        help="finish ADMM with the exact per-row least-squares solve on the kept weights (the optimum; slow on wide layers)",
    )
    q = parser.add_argument_group("quantization")
    q.add_argument("--wbits", type=int, default=None, help="weight-only quantization bits after pruning (e.g. 4)")
    q.add_argument("--group-size", type=int, default=128, help="quantization group along in-features (must divide them)")
    for name in sorted(METHODS):
        group = parser.add_argument_group(f"{name} options")
        METHODS[name].add_arguments(group)


def run(args) -> int:
    if args.method not in METHODS:
        raise UserError(f"unknown method {args.method!r} (known: {', '.join(sorted(METHODS))})")
    pattern = parse_pattern(args.pattern)
    sparsity = None if args.sparsity is None else check_target(args.sparsity, "--sparsity")
    if pattern is not None:
        implied = nm_sparsity(*pattern)
        if sparsity is not None and abs(sparsity - implied) > 1e-9:
            raise UserError(f"--sparsity {sparsity} contradicts --pattern {args.pattern} (which prunes {implied:g}); drop one")
        sparsity = implied
    if sparsity is None:
        sparsity = 0.5
    calib_ids = _calibration_source(args)
    # Upper bounds and the quantization flags: checked here, not after the model load and calibration.
    if args.nsamples > MAX_NSAMPLES or args.seqlen > MAX_SEQLEN:
        raise UserError(f"--nsamples must be <= {MAX_NSAMPLES} and --seqlen <= {MAX_SEQLEN} (got {args.nsamples}, {args.seqlen})")
    if not 0 <= args.seed <= MAX_SEED:
        raise UserError(f"--seed must be an integer in [0, 2**63 - 1], got {args.seed}")
    if args.wbits is not None:
        QuantSpec(args.wbits, args.group_size)
    weight_update = WeightUpdateConfig(
        mode=args.weight_update, damp=args.update_damp, iters=args.admm_iters, rho=args.admm_rho, exact=args.admm_exact, reselect=args.admm_reselect
    )
    layer_sparsity = read_layer_sparsity(args.layer_sparsity)
    method = METHODS[args.method].from_args(args)
    _check_outputs(args)
    config = DriverConfig(
        sparsity=sparsity,
        pattern=pattern,
        layer_sparsity=layer_sparsity,
        device=args.device,
        dtype=args.dtype,
        target=args.target,
        offload_acts=args.offload_acts,
        wbits=args.wbits,
        group_size=args.group_size,
        seed=args.seed,
        progress=not args.no_progress,
        weight_update=weight_update,
    )
    with dir_lock(args.out, wait=args.wait) as lock:  # one writer per run directory; taken before the slow model load
        lock.clean_temps()  # temp files of a killed earlier prune (only dead writers' ones)
        manifest = prune_to_dir(
            args.model,
            method,
            config,
            args.out,
            calib_dataset=args.calib_dataset,
            nsamples=args.nsamples,
            seqlen=args.seqlen,
            data_path=args.data_path,
            calib_ids=calib_ids,
            save_model=args.save_model,
        )
    print(
        f"[besa prune] {args.method} sparsity target {sparsity:g}{'' if pattern is None else f' ({args.pattern})'}: realised {manifest['realised_sparsity']:.4f} -> {Path(args.out) / 'masks.safetensors'} ({manifest['wall_s']:.0f} s)"
    )
    return 0


def _calibration_source(args):
    """Resolve --nsamples/--seqlen/--calib-dataset defaults, or load and check --calib-ids
    (dtype, shape, vocabulary range: before the model load).  Returns ``(ids, record)`` or None."""
    if args.calib_ids is None:
        args.nsamples = DEFAULT_NSAMPLES if args.nsamples is None else args.nsamples
        args.seqlen = DEFAULT_SEQLEN if args.seqlen is None else args.seqlen
        args.calib_dataset = args.calib_dataset or DEFAULT_DATASET
        if args.nsamples < 1 or args.seqlen < 2:
            raise UserError(f"--nsamples must be >= 1 and --seqlen >= 2 (got {args.nsamples}, {args.seqlen})")
        return None
    for flag, val in (("--calib-dataset", args.calib_dataset), ("--data-path", args.data_path)):
        if val is not None:
            raise UserError(f"{flag} and --calib-ids exclude each other (the file holds the calibration tokens)")
    ids, record = load_token_ids(args.calib_ids, "--calib-ids")
    for flag, val, have in (("--nsamples", args.nsamples, ids.shape[0]), ("--seqlen", args.seqlen, ids.shape[1])):
        if val is not None and val != have:
            raise UserError(f"{flag} {val} contradicts --calib-ids {args.calib_ids} of shape {list(ids.shape)}; drop {flag}")
    args.nsamples, args.seqlen = int(ids.shape[0]), int(ids.shape[1])
    check_vocab(ids, model_vocab_size(args.model), "--calib-ids", args.calib_ids)
    return ids, record


def _check_outputs(args) -> None:
    """--out and --save-model: writable, not files, not the model (checked before the model load)."""
    check_model_spec(args.model)
    model_dir = args.model if Path(args.model).exists() else None
    check_output_path(args.out, inputs=[model_dir])
    if args.save_model:
        check_output_path(args.save_model, flag="--save-model", inputs=[model_dir, args.out])
        save = Path(args.save_model)
        if save.exists() and not (save / "config.json").is_file():
            raise UserError(f"--save-model {save}: exists and is not a model directory; choose another path")
