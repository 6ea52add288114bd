"""``besa simulate``: run masks (or a synthetic workload) on an accelerator preset.

    besa simulate --masks DIR/masks.safetensors --hw vitcod --mode cycle --tokens 1,2048
    besa simulate --synthetic llama-7b:sparsity=0.5 --hw besa-paper-array --mode besa-compat --out OUT
    besa simulate --synthetic 4096x4096:nm=2:4 --hw vitcod --mode nm --set lines=32 --set dram_bytes_per_cycle=100

Writes ``OUT/layers.csv`` and ``OUT/summary.json`` (default OUT: ``DIR/sim/<preset>-<mode>/`` next to
the masks file).  Parsing and checks only: the work is :mod:`simulator.job`.  Never imports torch.
"""

from __future__ import annotations

import sys
from pathlib import Path

from besa_common.errors import UserError
from besa.flagrules import refuse_without
from besa_common.fileio import check_output_path
from simulator import job
from simulator.decoder import check_decoder_args, check_decoder_magnitudes, model_for
from simulator.engine import ENGINES, MEMORY_MODES, MODES_REGISTRY
from simulator.hardware import list_presets, load_hardware, parse_overrides
from simulator.run import RESULT_FILES
from simulator.sensitivity import DEFAULT_THRESHOLD, guesses, report_lines, sensitivity, sensitivity_record
from simulator.workload import MAX_TOKENS, check_seed, check_tokens

HELP = "simulate masks on a sparse accelerator, write layers.csv + summary.json"


def add_arguments(parser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--masks",
        metavar="PATH",
        help="masks file (DIR/masks.safetensors), a run directory, or a checkpoint to "
        "extract masks from (HF dir with zeros, compressed-tensors dir, .gguf; see besa masks extract)",
    )
    src.add_argument(
        "--synthetic",
        metavar="SPEC",
        help="seeded synthetic workload SHAPE[:PATTERN], e.g. llama-7b:sparsity=0.5, "
        "llama-7b[2]:nm=2:4, 4096x4096*3:skewed=0.5, smollm2-135m:dense "
        "(sparsity = fraction pruned; N:M = N kept of every M)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of --synthetic masks (default 0)")
    parser.add_argument(
        "--hw",
        default="vitcod",
        metavar="PRESET|FILE",
        help=f"hardware preset ({', '.join(list_presets())}) or a TOML file (default vitcod)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a hardware field, repeatable (e.g. --set lines=32 --set index_format=csr)",
    )
    parser.add_argument("--mode", default="cycle", choices=list(MODES_REGISTRY), help="; ".join(f"{m.name}: {m.help}" for m in MODES_REGISTRY.values()))
    parser.add_argument("--tokens", default="1", metavar="N[,N...]", help="tokens in flight: 1 = decode, seqlen = prefill; comma-separated list (default 1)")
    parser.add_argument(
        "--context",
        default=None,
        metavar="L[,L...]",
        help="also simulate the rest of the decoder step (dense): attention over L cached positions (0 = a fresh prompt) + "
        "KV cache per block, LM head, embeddings; one L for every --tokens count or one per count (--tokens 1,2048 "
        "--context 4096,0); writes decoder.csv and end-to-end totals",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=None,
        metavar="B",
        help="with --context: the tokens in flight come from B sequences, each with its own KV cache (default 1)",
    )
    parser.add_argument(
        "--model",
        metavar="NAME|CONFIG",
        default=None,
        help="with --context: model shapes (shipped name, config.json, directory, .gguf); default: the --synthetic spec's model, "
        "or the model the masks' manifest names",
    )
    parser.add_argument(
        "--sensitivity",
        action="store_true",
        help="also rerun the headline with every field the preset marks as a guess ([guesses]) at both ends of its "
        "plausible range, and name the guesses that move the speedup or the energy by more than the threshold",
    )
    parser.add_argument(
        "--sensitivity-threshold",
        type=float,
        default=None,
        metavar="X",
        help=f"with --sensitivity: the relative change that counts (default {DEFAULT_THRESHOLD:g} = {DEFAULT_THRESHOLD * 100:g} %%)",
    )
    parser.add_argument("--out", metavar="DIR", help="output directory (default: next to the masks, sim/<preset>-<mode>)")
    parser.add_argument(
        "--engine",
        choices=list(ENGINES),
        default=None,
        help="cpp (default), python (reference cycle model on fast statistics), reference (spec; tiny layers)",
    )


def parse_tokens(text: str) -> list[int]:
    try:
        out = [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--tokens expects N[,N...] positive integers, got {text!r}") from None
    if not out or any(not 1 <= n <= MAX_TOKENS for n in out):
        raise UserError(f"--tokens expects N[,N...] integers in [1, {MAX_TOKENS}], got {text!r}")
    return check_tokens(out)


def parse_context(text: str | None, tokens: list[int]) -> tuple[int, ...] | None:
    """``--context L`` (every token count) or ``L1,L2,...`` (one per ``--tokens`` count), each >= 0."""
    if text is None:
        return None
    try:
        out = tuple(int(x) for x in str(text).split(",") if x.strip())
    except ValueError:
        raise UserError(f"--context expects L[,L...] integers >= 0 (0 = a fresh prompt), got {text!r}") from None
    if len(out) not in (1, len(tokens)):
        raise UserError(f"--context: give one L for every token count or one per --tokens count ({len(tokens)}), got {len(out)}")
    return out * len(tokens) if len(out) == 1 else out


def run(args) -> int:
    tokens = parse_tokens(args.tokens)
    source = job.masks_source(args.masks) if args.masks else None
    # a --wbits run simulates at its bits and groups; an explicit --set wins
    overrides = {**job.quant_overrides(source), **parse_overrides(args.overrides)}
    hw = load_hardware(args.hw, overrides)
    context = parse_context(args.context, tokens)
    refuse_without(args, "--sensitivity", "--sensitivity-threshold")
    args.sensitivity_threshold = DEFAULT_THRESHOLD if args.sensitivity_threshold is None else args.sensitivity_threshold
    if args.sensitivity:
        if not 0 < args.sensitivity_threshold < 10:
            raise UserError(f"--sensitivity-threshold must be a relative change in (0, 10), got {args.sensitivity_threshold}")
        guesses(args.hw)  # the preset's [guesses] table is checked before any simulation
    if context is not None:
        args.batch = 1 if args.batch is None else args.batch
        for c, n in zip(context, tokens):
            check_decoder_args(c, args.batch, [n])
        if args.mode not in MEMORY_MODES:
            raise UserError(f"--context needs a mode with a memory model ({', '.join(MEMORY_MODES)}), not {args.mode}")
    else:
        refuse_without(args, "--context", "--batch", "--model")
    refuse_without(args, "--synthetic", "--seed")  # a masks file has no seed: it would be ignored
    args.seed = 0 if args.seed is None else args.seed
    if source is None:
        check_seed(args.seed)
        if not args.out:
            raise UserError("--out DIR is required with --synthetic")
    out = Path(args.out) if args.out else job.default_out(source, hw, args.mode)
    # The output directory is replaced as a unit: it must not be (or hold) the masks, nor hold other files.
    check_output_path(out, inputs=[source.path if source else None], replaces=RESULT_FILES)
    layers, where = job.load_workload(source, args.synthetic, args.seed)
    decoder = None
    if context is not None:
        masks = source.path if source is not None and not source.checkpoint else None
        decoder = job.DecoderStep(model_for(layers, args.model, args.synthetic, masks), context, args.batch)
        blocks = len({lw.block for lw in layers if lw.proj == "q_proj"})
        for c, n in zip(context, tokens):  # the overflow proof, before the C++ core
            check_decoder_magnitudes(decoder.shape, hw, [n], c, args.batch, blocks)
    extra, lines = {}, []
    if args.sensitivity:  # before the write: summary.json records it
        base, variations = sensitivity(layers, args.hw, overrides, args.mode, tokens, args.engine)
        lines = report_lines(base, variations, args.sensitivity_threshold)
        extra["sensitivity"] = sensitivity_record(variations, args.sensitivity_threshold)
    summary, csv_path, json_path = job.simulate_to_dir(
        layers, hw, args.mode, tokens, out, engine=args.engine, decoder=decoder, source=where, overrides=overrides, progress=sys.stderr.isatty(), extra=extra
    )
    for line in job.summary_lines(summary, hw, args.mode in MEMORY_MODES, decoder) + lines:
        print(line)
    print(f"wrote {csv_path} and {json_path}")
    return 0
