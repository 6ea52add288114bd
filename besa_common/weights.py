"""The weights file: the kept values of every linear whose weights a pruning run CHANGED (numpy only).

Masks alone describe a masking-only method (magnitude, Wanda, OWL, BESA): applying them to the
original weights gives the pruned model.  A method that also updates the kept weights (SparseGPT's
OBS update, ``besa prune --weight-update``) needs those values too; ``besa prune`` writes them to
``DIR/weights.safetensors`` beside ``DIR/masks.safetensors`` and every consumer applies them.

On disk (safetensors; the writer streams it, so it never holds the whole file in memory):

* one tensor per changed linear, keyed by its Hugging Face module name
  (``model.layers.0.self_attn.q_proj``): ``float32 [kept]``, the values ``W[r, c]`` at the KEPT
  positions (``keep[r, c] = 1``) in row-major order (row ``r`` ascending, then column ``c``) — the
  order of numpy's ``w[keep]`` and torch's ``w[keep]``.  Pruned weights are zero and not stored, so
  the file is about ``(1 - sparsity)`` of the dense fp32 size of those layers;
* metadata ``format = "besa-weights"``, ``version = "1"``, ``masks_sha256`` = the hex SHA-256 of the
  masks file's bytes (masks files are byte-deterministic), ``stage = "before-quant"`` and
  ``manifest`` = JSON ``{"layers": {name: {"shape": [out, in], "kept": n}}, ...writer's meta}``.

Quantization (``--wbits``): the values are the weights AFTER the update and masking but BEFORE
fake-quantization.  ``quant.safetensors`` (scale, zero per group) is applied after them and
reproduces the pruned run's quantized weights exactly; ``--no-quant`` then shows the updated,
unquantized model.  A quantized run whose method changed no weights has no weights file: masks +
quant parameters already reproduce it.

:func:`read_weights` rejects a foreign or corrupt file, an unknown version, a file written for
other masks (digest mismatch) and a tensor whose length disagrees with its mask, with a
:class:`~besa_common.errors.UserError` (one line).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from besa_common.digest import file_sha256
from besa_common.errors import UserError
from besa_common.fileio import atomic_writer

FORMAT = "besa-weights"
VERSION = "1"
STAGE = "before-quant"
FILENAME = "weights.safetensors"


sha256_file = file_sha256  # hex SHA-256 of a file's bytes (one definition: besa_common.digest)


def kept_values(w: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``w [out, in]`` at the kept positions of ``keep`` (bool, 1 = kept), row-major: ``float32 [kept]``."""
    w = np.asarray(w)
    keep = np.asarray(keep, dtype=bool)
    if w.shape != keep.shape:
        raise ValueError(f"weight shape {w.shape} != mask shape {keep.shape}")
    return np.ascontiguousarray(w[keep], dtype=np.float32)


def scatter_kept(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Inverse of :func:`kept_values`: dense ``float32 [out, in]`` with zeros at pruned positions."""
    keep = np.asarray(keep, dtype=bool)
    values = np.asarray(values, dtype=np.float32).reshape(-1)
    if values.size != int(keep.sum()):
        raise UserError(f"weights file holds {values.size} values for a mask that keeps {int(keep.sum())}")
    w = np.zeros(keep.shape, dtype=np.float32)
    w[keep] = values
    return w


def write_weights(
    path: str | os.PathLike,
    keep: Mapping[str, np.ndarray],
    dense: Callable[[str], np.ndarray],
    masks_sha256: str,
    meta: Mapping[str, Any] | None = None,
) -> dict:
    """Write the kept values of the layers in ``keep`` to ``path`` atomically; return the stored manifest.

    ``keep``: HF module name -> bool ``[out, in]`` (1 = kept), only the CHANGED layers.
    ``dense(name)``: that layer's final (pre-quantization) weight, ``[out, in]``; called once per
    layer while streaming, so only one layer is in memory at a time.  ``masks_sha256``: the digest
    of the masks file these values belong to (:func:`sha256_file`).
    """
    names = sorted(keep)
    if not names:
        raise UserError("write_weights: no layers to write")
    layers: dict[str, dict] = {}
    header: dict[str, Any] = {}
    offset = 0
    for name in names:
        k = np.asarray(keep[name], dtype=bool)
        n = int(k.sum())
        layers[name] = {"shape": [int(k.shape[0]), int(k.shape[1])], "kept": n}
        header[name] = {"dtype": "F32", "shape": [n], "data_offsets": [offset, offset + 4 * n]}
        offset += 4 * n
    manifest = dict(meta or {})
    manifest["layers"] = layers
    header["__metadata__"] = {
        "format": FORMAT,
        "version": VERSION,
        "stage": STAGE,
        "masks_sha256": str(masks_sha256),
        "manifest": json.dumps(manifest, sort_keys=True),
    }
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # safetensors: the data starts 8-byte aligned
    with atomic_writer(path) as fh:
        fh.write(len(text).to_bytes(8, "little"))
        fh.write(text)
        for name in names:  # data in header-offset order
            vals = kept_values(dense(name), keep[name])
            fh.write(vals.astype("<f4", copy=False).tobytes())
    return manifest


def read_weights(path: str | os.PathLike, masks_path: str | os.PathLike | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """Read a weights file: ``(values, manifest)``, ``values[name]`` = ``float32 [kept]``.

    With ``masks_path``, refuses a file written for other masks (SHA-256 of the masks file differs).
    Call :func:`check_weights` against the masks to check every layer's shape and count.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights file not found: {path}")
    try:
        with safe_open(str(path), framework="numpy") as fh:
            header = fh.metadata() or {}
            values = {n: fh.get_tensor(n) for n in fh.keys()}
    except Exception as exc:  # safetensors raises several types for a damaged file
        raise UserError(f"weights file {path} is truncated or corrupt ({type(exc).__name__})") from None
    if header.get("format") != FORMAT:
        raise UserError(f"{path} is not a weights file (format {header.get('format')!r}, expected {FORMAT!r})")
    if header.get("version") != VERSION:
        raise UserError(f"{path}: unknown weights format version {header.get('version')!r} (this build reads {VERSION!r})")
    if header.get("stage") != STAGE:
        raise UserError(f"{path}: unknown weights stage {header.get('stage')!r} (this build reads {STAGE!r})")
    if masks_path is not None and header.get("masks_sha256") != sha256_file(masks_path):
        raise UserError(f"{path} belongs to other masks than {masks_path} (digest mismatch; rerun besa prune into a fresh directory)")
    try:
        manifest = json.loads(header["manifest"])
        layers = manifest["layers"]
        counts = {n: int(v["kept"]) for n, v in layers.items()}
    except Exception:
        raise UserError(f"{path}: weights manifest is missing or corrupt") from None
    if set(counts) != set(values):
        raise UserError(f"{path}: manifest and tensors disagree on layers (e.g. {sorted(set(counts) ^ set(values))[0]!r})")
    for n, v in values.items():
        if v.dtype != np.float32 or v.shape != (counts[n],):
            raise UserError(f"{path}: layer {n!r} is {v.dtype} {tuple(v.shape)}, manifest says float32 [{counts[n]}]")
    return values, manifest


def check_weights(values: Mapping[str, np.ndarray], keep: Mapping[str, np.ndarray], path: str | os.PathLike = "weights file") -> None:
    """Every layer of ``values`` has a mask in ``keep`` with exactly as many kept entries as values."""
    for n, v in values.items():
        if n not in keep:
            raise UserError(f"{path}: layer {n!r} has no mask in the masks file")
        want = int(np.asarray(keep[n]).sum())
        if v.size != want:
            raise UserError(f"{path}: layer {n!r} holds {v.size} values, its mask keeps {want}")
