"""Keep masks from checkpoints other tools wrote (numpy + safetensors + gguf; never torch, never pickle).

:func:`extract_masks` reads a SOURCE and returns the masks of its LLaMA linear layers (packed, 1 =
kept, the :mod:`besa_common.masks` layout) plus a record of where they came from:

* a masks file or a run directory holding ``masks.safetensors`` — read as is;
* a compressed-tensors directory (``config.json`` -> ``quantization_config.sparsity_config.format``
  ``sparse-bitmask`` or ``sparse-24-bitmask``) — the ``NAME.bitmask`` tensors ARE the masks
  (``np.packbits(W != 0, axis=-1, bitorder="little")``, the same packing as ours): read directly,
  the values are never decompressed;
* a Hugging Face directory (or one ``.safetensors`` file) whose linear weights hold exact zeros —
  any pruning tool's output.  Sharded checkpoints (``model.safetensors.index.json``) are read shard
  by shard, tensor by tensor, in row chunks of at most :data:`CHUNK_BYTES` straight from the file
  (the safetensors header gives each tensor's byte range), so memory stays bounded by one chunk
  plus the packed masks (1 bit per weight) — a 70B checkpoint needs ~9 GB, not 140 GB;
* a ``.gguf`` file — zeros after dequantisation (``gguf.quants.dequantize``); q/k rows are put back
  in Hugging Face order (llama.cpp permutes them for its RoPE layout).  Quantisation itself rounds
  small weights to 0, so these masks over-count pruning: a warning says so.

A weight is "kept" iff it is not ±0 (tested on the bits: sign bit masked off).  Pickled checkpoints
(``.bin``, ``.pt``, ``.pth``, ``.pkl``) are refused: nothing user-supplied is ever unpickled.
"""

from __future__ import annotations

import json
import re
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from besa_common.errors import UserError
from besa_common.llama import ARCHITECTURES, LINEAR_OF
from besa_common.masks import read_masks_packed

CHUNK_BYTES = 16 << 20  # rows of one tensor read at a time (peak ~1.5x this + the packed masks)
PICKLED = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
# safetensors dtype -> (unsigned view dtype, mask of the non-sign bits): value == ±0 iff bits & mask == 0
_ZERO_VIEW: dict[str, tuple[type, int]] = {
    "F64": (np.uint64, 0x7FFF_FFFF_FFFF_FFFF),
    "F32": (np.uint32, 0x7FFF_FFFF),
    "F16": (np.uint16, 0x7FFF),
    "BF16": (np.uint16, 0x7FFF),
    "F8_E4M3": (np.uint8, 0x7F),
    "F8_E5M2": (np.uint8, 0x7F),
    "I64": (np.uint64, ~0 & 0xFFFF_FFFF_FFFF_FFFF),
    "I32": (np.uint32, 0xFFFF_FFFF),
    "I16": (np.uint16, 0xFFFF),
    "I8": (np.uint8, 0xFF),
    "U8": (np.uint8, 0xFF),
}
_HF_LINEAR = re.compile(r"^(?:model\.)?layers\.(\d+)\.(self_attn|mlp)\.(q|k|v|o|gate|up|down)_proj$")
_GGUF_LINEAR = {
    "attn_q": "q_proj",
    "attn_k": "k_proj",
    "attn_v": "v_proj",
    "attn_output": "o_proj",
    "ffn_gate": "gate_proj",
    "ffn_up": "up_proj",
    "ffn_down": "down_proj",
}
SPARSE_FORMATS = ("sparse-bitmask", "sparse-24-bitmask")


@dataclass
class Extracted:
    """Packed keep masks (``uint8 [out, ceil(in/8)]``), their shapes, and where they came from."""

    packed: dict[str, np.ndarray] = field(default_factory=dict)
    shapes: dict[str, tuple[int, int]] = field(default_factory=dict)
    source: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def add(self, name: str, packed: np.ndarray, rows: int, cols: int) -> None:
        self.packed[name] = packed
        self.shapes[name] = (rows, cols)


def linear_name(tensor_name: str) -> str | None:
    """``model.layers.3.mlp.up_proj`` for a LLaMA linear's weight tensor name, else None."""
    base = tensor_name[: -len(".weight")] if tensor_name.endswith(".weight") else tensor_name
    m = _HF_LINEAR.match(base)
    return None if m is None else f"model.layers.{m.group(1)}.{LINEAR_OF[m.group(3) + '_proj']}"


# ---------------------------------------------------------------------------- safetensors, raw
def safetensors_header(path: Path) -> tuple[dict, int]:
    """(header without ``__metadata__``, byte offset of the data section) of a safetensors file."""
    try:
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) < 8:
                raise ValueError("shorter than 8 bytes")
            n = struct.unpack("<Q", raw)[0]
            if n > 100_000_000:
                raise ValueError(f"header of {n} bytes")
            header = json.loads(f.read(n))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a readable safetensors file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if not isinstance(header, dict):
        raise UserError(f"{path}: not a readable safetensors file (header is not an object)")
    header.pop("__metadata__", None)
    return header, 8 + n


def _nonzero_packed(f, start: int, dtype: str, rows: int, cols: int, where: str) -> np.ndarray:
    """Pack ``W != ±0`` of one ``[rows, cols]`` tensor stored at byte ``start`` of the open file ``f``,
    reading row chunks of at most :data:`CHUNK_BYTES`."""
    if dtype not in _ZERO_VIEW:
        raise UserError(f"{where}: unsupported dtype {dtype} for a linear weight")
    view, mask = _ZERO_VIEW[dtype]
    item = np.dtype(view).itemsize
    out = np.empty((rows, (cols + 7) // 8), np.uint8)
    step = max(1, CHUNK_BYTES // max(1, cols * item))
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        f.seek(start + r0 * cols * item)
        buf = np.fromfile(f, dtype=np.dtype(view).newbyteorder("<"), count=(r1 - r0) * cols)
        if buf.size != (r1 - r0) * cols:
            raise UserError(f"{where}: file is truncated")
        np.bitwise_and(buf, view(mask), out=buf)
        out[r0:r1] = np.packbits(buf.reshape(r1 - r0, cols) != 0, axis=1, bitorder="little")
    return out


def _read_small(f, start: int, end: int, dtype: str) -> np.ndarray:
    types = {"I64": "<i8", "I32": "<i4", "U8": "u1", "I8": "i1"}
    if dtype not in types:
        raise ValueError(dtype)
    f.seek(start)
    return np.frombuffer(f.read(end - start), dtype=types[dtype])


def _shard_files(d: Path) -> list[Path]:
    index = d / "model.safetensors.index.json"
    if index.is_file():
        try:
            wm = json.loads(index.read_text())["weight_map"]
            files = sorted({d / v for v in wm.values()})
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{index}: not a readable shard index ({exc})") from None
        missing = [p.name for p in files if not p.is_file()]
        if missing:
            raise UserError(f"{d}: shard {missing[0]} named by model.safetensors.index.json is missing")
        return files
    return sorted(d.glob("*.safetensors"))


def from_safetensors(files: list[Path], bitmask: bool) -> Extracted:
    """Masks of the LLaMA linears in ``files``: ``NAME.bitmask`` (+ ``NAME.shape``) tensors when
    ``bitmask`` (compressed-tensors), else the exact zeros of ``NAME.weight``."""
    ex = Extracted()
    for path in files:
        header, base = safetensors_header(path)
        with open(path, "rb") as f:
            for tname, info in header.items():
                try:
                    dtype, shape, (s, e) = info["dtype"], info["shape"], info["data_offsets"]
                except (KeyError, TypeError, ValueError):
                    raise UserError(f"{path}: tensor {tname!r} has a malformed header entry") from None
                if tname.endswith(".weight") and linear_name(tname):
                    if len(shape) != 2:
                        raise UserError(f"{path}: linear weight {tname} is not 2-D ({shape})")
                    ex.add(linear_name(tname), _nonzero_packed(f, base + s, dtype, *shape, f"{path}:{tname}"), *shape)
                elif bitmask and tname.endswith(".bitmask") and linear_name(tname[: -len(".bitmask")]):
                    module = tname[: -len(".bitmask")]
                    sh = header.get(f"{module}.shape")
                    if sh is None:
                        raise UserError(f"{path}: {module}.bitmask without {module}.shape")
                    try:
                        rows, cols = (int(x) for x in _read_small(f, base + sh["data_offsets"][0], base + sh["data_offsets"][1], sh["dtype"]))
                    except (ValueError, KeyError, TypeError):
                        raise UserError(f"{path}: {module}.shape is not two integers") from None
                    if dtype != "U8" or list(shape) != [rows, (cols + 7) // 8]:
                        raise UserError(f"{path}: {module}.bitmask {dtype} {shape} does not fit the dense shape [{rows}, {cols}]")
                    bits = _read_small(f, base + s, base + e, "U8").reshape(rows, (cols + 7) // 8).copy()
                    if cols % 8:
                        bits[:, -1] &= np.uint8((1 << (cols % 8)) - 1)
                    ex.add(linear_name(module), bits, rows, cols)
    return ex


# ---------------------------------------------------------------------------- GGUF
def _unpermute_rows(keep: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's q/k row permutation (``reshape(heads, 2, d/2, in).swapaxes(1, 2)``)."""
    rows = keep.shape[0]
    return keep.reshape(heads, rows // heads // 2, 2, -1).swapaxes(1, 2).reshape(keep.shape)


def from_gguf(path: Path) -> Extracted:
    """Masks = the zeros of the dequantised linear weights of a GGUF file (LLaMA family)."""
    import gguf
    from gguf.quants import dequantize

    try:
        reader = gguf.GGUFReader(str(path))
        arch = str(reader.fields["general.architecture"].contents())
    except Exception as exc:  # the reader raises several types on damaged files
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{path} is not a readable GGUF file ({msg})") from None
    if arch not in ARCHITECTURES:
        raise UserError(f"{path}: architecture {arch!r} is not LLaMA-family (supported: {', '.join(ARCHITECTURES)})")
    heads = int(reader.fields[f"{arch}.attention.head_count"].contents())
    kv_field = reader.fields.get(f"{arch}.attention.head_count_kv")
    kv_heads = int(kv_field.contents()) if kv_field is not None else heads
    ex = Extracted()
    quantized = set()
    for t in reader.tensors:
        m = re.fullmatch(r"blk\.(\d+)\.(\w+)\.weight", t.name)
        if not m or m.group(2) not in _GGUF_LINEAR:
            continue
        proj = _GGUF_LINEAR[m.group(2)]
        w = dequantize(t.data, t.tensor_type)  # (out, in) float32
        w = w.reshape(int(t.shape[1]), int(t.shape[0])) if w.ndim != 2 else w
        keep = w != 0
        if proj in ("q_proj", "k_proj"):
            keep = _unpermute_rows(keep, heads if proj == "q_proj" else kv_heads)
        if t.tensor_type.name not in ("F32", "F16", "BF16", "F64"):
            quantized.add(t.tensor_type.name)
        ex.add(f"model.layers.{int(m.group(1))}.{LINEAR_OF[proj]}", np.packbits(keep, axis=1, bitorder="little"), *keep.shape)
    if quantized:
        ex.warnings.append(
            f"{path.name}: weights are quantised ({', '.join(sorted(quantized))}); quantisation itself rounds "
            "small weights to 0, so these masks count those as pruned"
        )
    ex.source.update(quantization=sorted(quantized) or None)
    return ex


# ---------------------------------------------------------------------------- dispatch
def _config(d: Path) -> dict:
    p = d / "config.json"
    if not p.is_file():
        return {}
    try:
        cfg = json.loads(p.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{p}: not readable JSON ({str(exc).splitlines()[0]})") from None
    return cfg if isinstance(cfg, dict) else {}


def _sparsity_format(cfg: dict) -> str | None:
    q = cfg.get("quantization_config") or cfg.get("compression_config") or {}
    sp = (q.get("sparsity_config") if isinstance(q, dict) else None) or cfg.get("sparsity_config") or {}
    return sp.get("format") if isinstance(sp, dict) else None


def _check_arch(cfg: dict, where: Path) -> None:
    mt = cfg.get("model_type")
    if mt is not None and str(mt).lower() not in ARCHITECTURES:
        raise UserError(f"{where}: architecture {mt!r} is not LLaMA-family (supported: {', '.join(ARCHITECTURES)})")


def _refuse_pickle(path: Path) -> None:
    raise UserError(f"{path}: pickled checkpoints are never loaded (unpickling runs arbitrary code); convert it to safetensors first")


def _from_dir(d: Path) -> Extracted:
    if (d / "masks.safetensors").is_file():
        return _from_masks(d / "masks.safetensors")
    cfg = _config(d)
    _check_arch(cfg, d)
    files = _shard_files(d)
    if not files:
        pickles = [p for p in d.iterdir() if p.suffix in PICKLED]
        if pickles:
            _refuse_pickle(pickles[0])
        raise UserError(f"{d}: no masks.safetensors, *.safetensors weights or config found")
    fmt = _sparsity_format(cfg)
    if fmt is not None and fmt not in SPARSE_FORMATS + ("dense",):
        raise UserError(f"{d}: compressed-tensors sparsity format {fmt!r} is not supported (supported: {', '.join(SPARSE_FORMATS)})")
    ex = from_safetensors(files, bitmask=fmt in SPARSE_FORMATS)
    ex.source.update(kind="compressed-tensors" if fmt in SPARSE_FORMATS else "hf-zeros", format=fmt, files=[p.name for p in files])
    return ex


def _from_masks(path: Path) -> Extracted:
    packed, shapes, manifest = read_masks_packed(path)
    ex = Extracted(dict(packed), dict(shapes))
    ex.source.update(kind="masks", manifest_source=manifest.get("source"))
    return ex


def _from_file(p: Path) -> Extracted:
    suffix = p.suffix.lower()
    if suffix in PICKLED:
        _refuse_pickle(p)
    if suffix == ".gguf":
        ex = from_gguf(p)
        ex.source["kind"] = "gguf"
        return ex
    if suffix == ".safetensors":
        header, _ = safetensors_header(p)
        if not _holds_weights(header):  # a besa masks file: keyed by module name, no ".weight"
            return _from_masks(p)
        ex = from_safetensors([p], bitmask=False)
        ex.source.update(kind="hf-zeros", files=[p.name])
        return ex
    raise UserError(f"{p}: expected a masks file, a .safetensors / .gguf checkpoint or a directory")


SOURCES: dict[str, Callable[[Path], Extracted]] = {"dir": _from_dir, "file": _from_file}


def extract_masks(src: str | Path) -> Extracted:
    """Masks of ``src`` (see the module docstring); one-line :class:`UserError` for a bad source."""
    p = Path(src).expanduser()
    if not p.exists():
        raise UserError(f"{src}: no such file or directory")
    ex = SOURCES["dir" if p.is_dir() else "file"](p)
    if not ex.packed:
        raise UserError(f"{src}: no LLaMA linear weights found (expected model.layers.N.(self_attn|mlp).*_proj)")
    ex.source["path"] = str(p.resolve())
    return ex


def is_checkpoint(src: str | Path) -> bool:
    """True when ``src`` is a checkpoint to extract from, False for a masks file or a run directory
    (and for anything unreadable, so the masks reader gives its own error)."""
    p = Path(src).expanduser()
    if p.is_dir():
        return not (p / "masks.safetensors").is_file()
    if p.suffix.lower() in PICKLED + (".gguf",):
        return True
    if p.suffix.lower() == ".safetensors" and p.is_file():
        try:
            header, _ = safetensors_header(p)
        except UserError:
            return False
        return _holds_weights(header)
    return False


def _holds_weights(header: dict) -> bool:
    return any(k.endswith(".weight") and linear_name(k) for k in header)


def warn(ex: Extracted, stream=None) -> None:
    for w in ex.warnings:
        print(f"warning: {w}", file=stream or sys.stderr)
