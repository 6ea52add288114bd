"""``besa simulate``: run masks (or a synthetic workload) on an accelerator preset.

    besa simulate --masks DIR/masks.safetensors --hw vitcod --mode cycle --tokens 1,2048
    besa simulate --synthetic llama-7b:sparsity=0.5 --hw besa --mode besa-compat --out OUT
    besa simulate --synthetic 4096x4096:nm=2:4 --hw vitcod --mode nm --set lines=32 --set dram_bytes_per_cycle=100

Writes ``OUT/layers.csv`` and ``OUT/summary.json`` (default OUT: ``DIR/sim/<preset>-<mode>/`` next to
the masks file).  Never imports torch.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from besa_common.errors import UserError

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
    parser.add_argument("--seed", type=int, default=0, help="seed of --synthetic masks (default 0)")
    parser.add_argument(
        "--hw", default="vitcod", metavar="PRESET|FILE", help="hardware preset in configs/hw (vitcod, besa, hbm-4k) or a TOML file (default vitcod)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a hardware field, repeatable (e.g. --set lines=32 --set index_format=csr)",
    )
    from simulator.engine import MODES_REGISTRY

    parser.add_argument("--mode", default="cycle", choices=list(MODES_REGISTRY), help="; ".join(f"{m.name}: {m.help}" for m in MODES_REGISTRY.values()))
    parser.add_argument("--tokens", default="1", metavar="N[,N...]", help="tokens in flight: 1 = decode, seqlen = prefill; comma-separated list (default 1)")
    parser.add_argument(
        "--context",
        type=int,
        default=None,
        metavar="L",
        help="also simulate the rest of the decoder step (dense): attention over L cached positions + "
        "KV cache per block, LM head, embeddings; writes decoder.csv and end-to-end totals",
    )
    parser.add_argument(
        "--batch", type=int, default=1, metavar="B", help="with --context: the tokens in flight come from B sequences, each with its own KV cache (default 1)"
    )
    parser.add_argument(
        "--model",
        metavar="NAME|CONFIG",
        default=None,
        help="with --context: model shapes (shipped name, config.json, directory, .gguf); default: the --synthetic spec's model",
    )
    parser.add_argument("--out", metavar="DIR", help="output directory (default: next to the masks, sim/<preset>-<mode>)")
    parser.add_argument(
        "--engine",
        choices=["cpp", "python", "reference"],
        default=None,
        help="cpp (default), python (reference cycle model on fast statistics), reference (spec; tiny layers)",
    )


def parse_tokens(text: str) -> list[int]:
    from simulator.workload import MAX_TOKENS, check_tokens

    try:
        out = [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--tokens expects N[,N...] positive integers, got {text!r}") from None
    if not out or any(not 1 <= n <= MAX_TOKENS for n in out):
        raise UserError(f"--tokens expects N[,N...] integers in [1, {MAX_TOKENS}], got {text!r}")
    return check_tokens(out)


def run(args) -> int:
    from simulator import workload as wl
    from simulator.hardware import load_hardware, parse_overrides
    from simulator.run import simulate, summarize, write_results

    from besa_common.fileio import check_output_path
    from simulator.run import RESULT_FILES

    tokens = parse_tokens(args.tokens)
    hw = load_hardware(args.hw, parse_overrides(args.overrides))
    if args.context is not None:
        from simulator.decoder import check_decoder_args

        check_decoder_args(args.context, args.batch, tokens)
        if args.mode not in ("cycle", "dense", "nm"):
            raise UserError(f"--context needs a mode with a memory model (cycle, dense, nm), not {args.mode}")
    path = None
    checkpoint = False
    if args.masks:
        from besa_common.extract import is_checkpoint

        path = Path(args.masks)
        checkpoint = is_checkpoint(path)
        if checkpoint and not args.out:
            raise UserError("--out DIR is required when --masks is a checkpoint (results are not written into it)")
        if path.is_dir() and not checkpoint:
            path = path / "masks.safetensors"
        default_out = path.parent / "sim" / f"{hw.name}-{args.mode}"
    else:
        wl.check_seed(args.seed)
        default_out = None
    if args.out:
        out = Path(args.out)
    elif default_out is not None:
        out = default_out
    else:
        raise UserError("--out DIR is required with --synthetic")
    # The output directory is replaced as a unit: it must not be (or hold) the masks, nor hold other files.
    check_output_path(out, inputs=[path], replaces=RESULT_FILES)
    if checkpoint:
        from besa_common.extract import extract_masks, warn

        ex = extract_masks(path)
        warn(ex)
        layers = wl.from_packed(ex.packed, ex.shapes, str(path))
        source = {"checkpoint": ex.source}
    elif path is not None:
        layers = wl.from_masks(path)
        source = {"masks": str(path)}
    else:
        layers = wl.synthetic(args.synthetic, args.seed)
        source = {"synthetic": args.synthetic, "seed": args.seed}
    shape = None
    if args.context is not None:
        from simulator.decoder import model_for

        shape = model_for(layers, args.model, args.synthetic)
    t0 = time.perf_counter()
    df = simulate(layers, hw, args.mode, tokens, engine=args.engine, progress=sys.stderr.isatty())
    summary = summarize(df, hw)
    dec = None
    if shape is not None:
        from simulator.decoder import add_end_to_end, decoder_rows

        dec = decoder_rows(layers, shape, hw, tokens, args.context, args.batch, args.engine)
        add_end_to_end(summary, dec, hw)
        summary["decoder"] = {"model": shape.name, "context": args.context, "batch": args.batch}
    summary["source"] = source
    summary["overrides"] = parse_overrides(args.overrides)
    summary["wall_s"] = round(time.perf_counter() - t0, 3)
    csv_path, json_path = write_results(out, df, summary, dec)
    for n, t in summary["totals"].items():
        extra = f", vs n:m {t['speedup_vs_nm']:.3f}x" if t.get("speedup_vs_nm") is not None else ""
        bound = f", {round(t['memory_bound_share'] * t['layers'])}/{t['layers']} layers memory-bound" if "memory_bound_share" in t else ""
        energy = f", energy vs dense {t['energy_vs_dense']:.3f}x" if t.get("energy_vs_dense") is not None else ""
        print(
            f"N={n}: {t['cycles']} cycles ({t['time_ms']:.3f} ms at {hw.freq_mhz:g} MHz), speedup vs dense {t['speedup_vs_dense']:.3f}x{extra}{energy}{bound}"
        )
        if "e2e_cycles" in t:
            print(
                f"  whole decoder step (context {args.context}, batch {args.batch}): {t['e2e_cycles']} cycles "
                f"({t['e2e_us_per_token']:.2f} us/token), speedup vs dense {t['e2e_speedup_vs_dense']:.3f}x"
            )
    if summary.get("ridge_tokens") is not None and args.mode in ("cycle", "dense", "nm"):
        print(f"ridge point of {hw.name}: ~{summary['ridge_tokens']:.1f} tokens (fewer tokens in flight -> weight streaming is memory-bound)")
    print(f"wrote {csv_path} and {json_path}")
    return 0
