"""The masks file: the one format every stage uses to hand pruning masks on (numpy only, no torch).

Convention: ``keep[r, c] = True`` means weight ``W[r, c]`` (row = output feature, column = input
feature, PyTorch layout ``[out, in]``) is KEPT.  1 = kept, everywhere in this project.

On disk (safetensors):

* one tensor per pruned linear layer, keyed by its Hugging Face module name
  (``model.layers.0.self_attn.q_proj``): ``uint8 [out, ceil(in / 8)]``, the keep bits packed along
  the in-features axis with ``np.packbits(..., axis=1, bitorder="little")``; pad bits are 0;
* safetensors metadata ``format = "besa-masks"``, ``version = "1"`` and ``manifest`` = a JSON
  object: whatever the writer passed as ``meta`` (model, method, target, pattern, calibration ...)
  plus ``layers = {name: {"shape": [out, in], "kept": K, "density": K / (out * in)}}`` (``kept`` =
  the exact number of 1 bits; files written before it existed have only ``density``).

Every reader (``besa simulate``, ``eval``, ``export``, ``run``) goes through ONE check,
:func:`validate_masks`: a truncated or corrupt file, an unknown version, a NaN/Infinity anywhere in
the manifest, an empty layer (``[0, 8]``), a tensor that disagrees with its manifest shape, non-zero
pad bits, or a kept count that disagrees with the bits (exactly, or within float tolerance of
``density`` for old files) is a :class:`~besa_common.errors.UserError` (one line).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from besa_common.errors import UserError
from besa_common.fileio import atomic_write_bytes
from besa_common.foreign import safetensors_header

FORMAT = "besa-masks"
VERSION = "1"


def pack_keep(keep: np.ndarray) -> np.ndarray:
    """Pack a bool ``[out, in]`` keep mask into ``uint8 [out, ceil(in/8)]`` (little bit order)."""
    keep = np.asarray(keep)
    if keep.ndim != 2:
        raise ValueError(f"a keep mask is 2-D [out, in], got shape {keep.shape}")
    return np.packbits(keep.astype(bool, copy=False), axis=1, bitorder="little")


def unpack_keep(packed: np.ndarray, cols: int) -> np.ndarray:
    """Inverse of :func:`pack_keep`: ``uint8 [out, ceil(cols/8)]`` -> bool ``[out, cols]``."""
    return np.unpackbits(packed, axis=1, count=cols, bitorder="little").astype(bool)


def encode_masks_packed(packed: dict[str, np.ndarray], shapes: dict[str, tuple[int, int]], meta: dict[str, Any]) -> tuple[bytes, dict]:
    """:func:`encode_masks` for masks already packed (``uint8 [out, ceil(in/8)]``, pad bits 0): a
    whole model's masks never need unpacking (masks extracted from a 70B checkpoint)."""
    keep_bits = {}
    for name, p in packed.items():
        rows, cols = shapes[name]
        p = np.ascontiguousarray(p, dtype=np.uint8)
        if p.shape != (rows, (cols + 7) // 8) or rows * cols == 0:
            raise UserError(f"write_masks: packed mask {name!r} {p.shape} does not fit [{rows}, {cols}]")
        if cols % 8 and (p[:, -1] >> np.uint8(cols % 8)).any():
            raise UserError(f"write_masks: packed mask {name!r} has non-zero pad bits")
        keep_bits[name] = p
    return _encode(keep_bits, shapes, meta)


def _encode(tensors_in: dict[str, np.ndarray], shapes: dict[str, tuple[int, int]], meta: dict[str, Any]) -> tuple[bytes, dict]:
    from safetensors.numpy import save

    if not tensors_in:
        raise UserError("write_masks: no layers to write")
    tensors: dict[str, np.ndarray] = {}
    layers: dict[str, dict] = {}
    for name in sorted(tensors_in):
        rows, cols = shapes[name]
        tensors[name] = tensors_in[name]
        kept = int(np.bitwise_count(tensors_in[name]).sum(dtype=np.int64))
        layers[name] = {"shape": [int(rows), int(cols)], "kept": kept, "density": kept / (rows * cols)}
    manifest = dict(meta)
    manifest["layers"] = layers
    try:
        text = json.dumps(manifest, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise UserError(f"write_masks: meta is not JSON-serialisable: {exc}") from None
    data = save(tensors, metadata={"format": FORMAT, "version": VERSION, "manifest": text})
    return _canonical_header(data), manifest


def write_masks_packed(path: str | os.PathLike, packed: dict[str, np.ndarray], shapes: dict[str, tuple[int, int]], meta: dict[str, Any]) -> dict:
    """:func:`write_masks` for packed masks (see :func:`encode_masks_packed`); atomic."""
    data, manifest = encode_masks_packed(packed, shapes, meta)
    atomic_write_bytes(path, data)
    return manifest


def encode_masks(keep: dict[str, np.ndarray], meta: dict[str, Any]) -> tuple[bytes, dict]:
    """The bytes of a masks file for ``keep`` (bool ``[out, in]``, 1 = kept) and ``meta``, and its manifest.

    Deterministic: the same masks and meta give the same bytes (so a digest of the file identifies
    the masks; ``besa_common.weights`` ties a weights file to it that way).
    """
    if not keep:
        raise UserError("write_masks: no layers to write")
    packed: dict[str, np.ndarray] = {}
    shapes: dict[str, tuple[int, int]] = {}
    for name in sorted(keep):
        k = np.asarray(keep[name])
        if k.ndim != 2 or k.size == 0:
            raise UserError(f"write_masks: mask {name!r} must be a non-empty 2-D [out, in] array, got {k.shape}")
        packed[name] = np.ascontiguousarray(pack_keep(k.astype(bool, copy=False)))
        shapes[name] = (int(k.shape[0]), int(k.shape[1]))
    return _encode(packed, shapes, meta)


def write_masks(path: str | os.PathLike, keep: dict[str, np.ndarray], meta: dict[str, Any]) -> dict:
    """Write keep masks (bool ``[out, in]``, 1 = kept) and a JSON-able ``meta`` to ``path`` atomically.

    Returns the manifest that was stored (``meta`` plus the per-layer ``layers`` table).
    """
    data, manifest = encode_masks(keep, meta)
    atomic_write_bytes(path, data)
    return manifest


def _canonical_header(data: bytes) -> bytes:
    """Re-serialise the safetensors JSON header with sorted keys.

    safetensors writes its metadata map in hash order, so two writes of the same masks differed in
    their header bytes; sorted keys make identical masks give identical files (same layout:
    u64 little-endian header length, JSON padded with spaces to 8 bytes, then the data).
    """
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + n :]


def _reject_constant(name: str):
    raise ValueError(f"non-finite number {name}")


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"expected an integer, got {v!r}")
    return v


def parse_manifest(text: Any, where: str) -> tuple[dict, dict[str, tuple[int, int]]]:
    """Strictly parse the manifest JSON: ``(manifest, {name: (out, in)})``.  NaN/Infinity, a missing
    or empty ``layers`` table, a non-positive shape or a density outside [0, 1] is corruption."""
    try:
        manifest = json.loads(text, parse_constant=_reject_constant)
        if not isinstance(manifest, dict) or not isinstance(manifest.get("layers"), dict) or not manifest["layers"]:
            raise ValueError("no layers table")
        shapes = {}
        for n, v in manifest["layers"].items():
            if not isinstance(v, dict) or not isinstance(v.get("shape"), list) or len(v["shape"]) != 2:
                raise ValueError(f"layer {n!r}: no [out, in] shape")
            rows, cols = _int(v["shape"][0]), _int(v["shape"][1])
            if rows < 1 or cols < 1:
                raise UserError(f"{where}: layer {n!r} has shape [{rows}, {cols}]; every layer needs out >= 1 and in >= 1")
            d = v.get("density")
            if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0.0 <= d <= 1.0:
                raise ValueError(f"layer {n!r}: density {d!r} not in [0, 1]")
            if "kept" in v and not 0 <= _int(v["kept"]) <= rows * cols:
                raise ValueError(f"layer {n!r}: kept {v['kept']} not in [0, {rows * cols}]")
            shapes[n] = (rows, cols)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"{where}: masks manifest is missing or corrupt ({str(exc)[:120] or type(exc).__name__})") from None
    return manifest, shapes


def _popcount(packed: np.ndarray) -> int:
    """Number of 1 bits in a uint8 array (counted 64 bits at a time: ~8x fewer elements)."""
    flat = np.ascontiguousarray(packed).reshape(-1)
    head = flat.size - flat.size % 8
    return int(np.bitwise_count(flat[:head].view(np.uint64)).sum(dtype=np.int64) + np.bitwise_count(flat[head:]).sum(dtype=np.int64))


def validate_masks(packed: dict[str, np.ndarray], shapes: dict[str, tuple[int, int]], manifest: dict, where: str) -> None:
    """THE check of a masks file's contents, shared by every reader (see the module docstring).

    ``packed``: name -> uint8 ``[out, ceil(in/8)]``; ``shapes`` and ``manifest`` from :func:`parse_manifest`.
    """
    if set(shapes) != set(packed):
        missing = sorted(set(shapes) ^ set(packed))
        raise UserError(f"{where}: manifest and tensors disagree on layers (e.g. {missing[0]!r})")
    for n, (rows, cols) in shapes.items():
        p = packed[n]
        want = (rows, (cols + 7) // 8)
        if p.dtype != np.uint8 or p.shape != want:
            raise UserError(f"{where}: layer {n!r} has packed shape {tuple(p.shape)} {p.dtype}, manifest says [{rows}, {cols}] -> {want} uint8")
        if cols % 8 and (p[:, -1] & np.uint8(0xFF ^ ((1 << (cols % 8)) - 1))).any():
            raise UserError(f"{where}: layer {n!r} has non-zero pad bits (corrupt file)")
        kept = _popcount(p)
        entry = manifest["layers"][n]
        if "kept" in entry:
            if kept != entry["kept"]:
                raise UserError(f"{where}: layer {n!r} has {kept} kept weights but its manifest says {entry['kept']} (corrupt file)")
        elif abs(kept / (rows * cols) - float(entry["density"])) > 1e-9:
            raise UserError(f"{where}: layer {n!r} density {kept / (rows * cols):.6f} disagrees with its manifest ({float(entry['density']):.6f})")


def read_manifest(path: str | os.PathLike) -> dict | None:
    """The manifest of a masks file, read from its header only (no tensor is loaded); None when
    ``path`` is not a readable masks file.  For labels (the model, the method), not validation."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as fh:
            header = fh.metadata() or {}
        if header.get("format") != FORMAT:
            return None
        manifest = json.loads(header.get("manifest") or "{}")
    except Exception:  # a damaged or foreign file: no manifest to show
        return None
    return manifest if isinstance(manifest, dict) else None


def read_masks_packed(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, tuple[int, int]], dict]:
    """Read and validate a masks file without unpacking: ``(packed uint8 arrays, {name: (out, in)}, manifest)``.

    The simulator's numba statistics work on the packed bits directly.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise UserError(f"masks file not found: {path}")
    safetensors_header(path)  # types, offsets inside the file, sizes: one line naming the field
    try:
        with safe_open(str(path), framework="numpy") as fh:
            header = fh.metadata() or {}
            names = list(fh.keys())
            packed = {n: fh.get_tensor(n) for n in names}
    except Exception as exc:  # safetensors raises several types for a damaged file
        raise UserError(f"masks file {path} is truncated or corrupt ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'unreadable'})") from None
    if header.get("format") != FORMAT:
        raise UserError(f"{path} is not a masks file (format {header.get('format')!r}, expected {FORMAT!r})")
    if header.get("version") != VERSION:
        raise UserError(f"{path}: unknown masks format version {header.get('version')!r} (this build reads {VERSION!r})")
    manifest, shapes = parse_manifest(header.get("manifest"), str(path))
    validate_masks(packed, shapes, manifest, str(path))
    return packed, shapes, manifest


def read_masks(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
    """Read a masks file: ``(keep, manifest)`` with ``keep[name]`` bool ``[out, in]``, 1 = kept.

    Validated by :func:`validate_masks` (kept counts vs the bits, pad bits, shapes, finite manifest).
    """
    packed, shapes, manifest = read_masks_packed(path)
    return {n: unpack_keep(packed[n], cols) for n, (rows, cols) in shapes.items()}, manifest
