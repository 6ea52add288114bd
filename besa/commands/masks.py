"""``besa masks extract``: masks from checkpoints other tools wrote (no torch).

    besa masks extract SRC --out masks.safetensors

SRC: a Hugging Face directory (or ``.safetensors`` file) whose linear weights hold exact zeros, a
compressed-tensors ``sparse-bitmask`` / ``sparse-24-bitmask`` directory, a ``.gguf`` file, or a
masks file / run directory (see :mod:`besa_common.extract`).  The masks file's manifest records
the source (``source`` = kind, path, files, format).
"""

from __future__ import annotations

from pathlib import Path

from besa_common.extract import extract_masks, warn
from besa_common.fileio import check_output_path
from besa_common.masks import write_masks_packed

HELP = "extract keep masks from a checkpoint (HF zeros, compressed-tensors bitmasks, GGUF)"


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="masks_command", metavar="ACTION", required=True)
    ex = sub.add_parser("extract", help="write the masks of SRC as a masks file", description=HELP)
    ex.add_argument("src", metavar="SRC", help="HF directory / .safetensors, compressed-tensors directory, .gguf, masks file or run directory")
    ex.add_argument("--out", required=True, metavar="FILE", help="masks file to write (e.g. DIR/masks.safetensors)")


def run(args) -> int:
    out = Path(args.out)
    check_output_path(out, inputs=[Path(args.src)])
    ex = extract_masks(args.src)
    warn(ex)
    manifest = write_masks_packed(out, ex.packed, ex.shapes, {"method": "extracted", "source": ex.source})
    kept = sum(v["kept"] for v in manifest["layers"].values())
    total = sum(v["shape"][0] * v["shape"][1] for v in manifest["layers"].values())
    print(f"[besa masks] {len(ex.packed)} linear layers from {ex.source.get('kind')} source, realised sparsity {1 - kept / total:.4f} -> {out}")
    return 0
