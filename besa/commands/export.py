"""``besa export``: save a pruned model as a plain HF directory or in compressed-tensors' sparse-bitmask format.

    besa export --model smollm2-135m --masks runs/x/masks.safetensors --format compressed --out runs/x/export

Prints the size written against the same model stored densely.  See :mod:`pruning.export`.
"""

from __future__ import annotations

from pathlib import Path

from besa_common.extras import require
from besa_common.fileio import dir_lock
from pruning.export import DTYPES, FORMATS, check_export_out, export_pruned
from pruning.model_spec import check_model_spec

HELP = "save a pruned model as a HF directory or compressed-tensors"


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, help="smollm2-135m, a local HF directory or a .gguf file")
    parser.add_argument("--masks", required=True, type=Path, help="masks file (besa prune's DIR/masks.safetensors) or its run directory")
    parser.add_argument(
        "--format",
        required=True,
        choices=FORMATS,
        help="hf = plain HF directory (zeros stored, same size as dense); "
        "compressed = compressed-tensors sparse-bitmask (non-zeros + 1 bit per weight; "
        "sparse-24-bitmask when every mask is 2:4, what vLLM's 2:4 kernels serve)",
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory (written atomically)")
    parser.add_argument(
        "--dtype", choices=tuple(DTYPES), default="float32", help="dtype of the stored weights (default float32: logits equal the in-memory masked model)"
    )
    parser.add_argument(
        "--no-quant", action="store_true", help="ignore quant.safetensors next to the masks (default: apply it, storing fake-quantized weights)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    parser.add_argument("--wait", action="store_true", help="if another writer holds --out, wait for it instead of failing at once")


def run(args) -> int:
    if args.format == "compressed":
        require("export --format compressed", "export")  # before the slow model load
    masks = args.masks / "masks.safetensors" if args.masks.is_dir() else args.masks
    # Every check before the model load: the output path (never the input: --out RUN_DIR --overwrite
    # would delete the masks it reads), then the masks file itself (inside export_pruned).
    check_model_spec(args.model)
    check_export_out(args.out, args.overwrite, inputs=[masks, args.model if Path(args.model).exists() else None])
    with dir_lock(args.out, wait=args.wait) as lock:
        lock.clean_temps(recursive=False)  # the temporary copy of a killed earlier export
        report = export_pruned(args.model, masks, args.out, args.format, dtype=args.dtype, quant=not args.no_quant, overwrite=args.overwrite)
    print(report.summary())
    return 0
