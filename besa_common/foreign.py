"""Validated readers of other tools' checkpoint headers: safetensors and GGUF (numpy only, no torch).

A checkpoint is foreign input: every field is checked for its TYPE and its RANGE before anything is
read or allocated from it, and a bad one is ONE :class:`~besa_common.errors.UserError` naming the
file, the tensor or key, and what is allowed.

* :func:`safetensors_header` — the header of a ``.safetensors`` file as :class:`TensorEntry` records:
  the header length inside the file, a JSON object, each tensor's ``dtype`` a known name, its
  ``shape`` a list of non-negative integers, its ``data_offsets`` two integers inside the data
  section whose span is exactly ``prod(shape) * itemsize`` bytes.  So every size derived from a
  header is bounded by the file's own size before a byte is allocated (a ``1e9 x 1e9`` shape in a
  1 KB file is refused, never handed to numpy).
* :func:`open_gguf` / :func:`gguf_int` — a GGUF file opened with one-line errors, and an integer
  metadata key read with its type and range checked (a missing required key is named, not a KeyError).
"""

from __future__ import annotations

import json
import math
import numbers
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from besa_common.errors import UserError

# safetensors dtype names -> bytes per element
DTYPE_BYTES: dict[str, int] = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U64": 8,
    "U32": 4,
    "U16": 2,
    "U8": 1,
    "BOOL": 1,
}
MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own limit
MAX_NDIM = 8


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of a safetensors file: ``start``/``end`` are ABSOLUTE byte offsets in the file."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def itemsize(self) -> int:
        return DTYPE_BYTES[self.dtype]


def _bad(path: Path, what: str) -> UserError:
    return UserError(f"{path}: truncated or corrupt safetensors file: {what}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _no_constants(name: str):
    raise ValueError(f"non-finite number {name}")


def safetensors_header(path: str | os.PathLike) -> tuple[dict[str, TensorEntry], dict[str, str]]:
    """``({name: TensorEntry}, metadata)`` of a safetensors file, every field validated (module docstring)."""
    path = Path(path)
    try:
        size = os.stat(path).st_size
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) < 8:
                raise _bad(path, f"{size} bytes, shorter than the 8-byte header length")
            n = struct.unpack("<Q", raw)[0]
            if n > min(MAX_HEADER_BYTES, size - 8):
                raise _bad(path, f"header length {n} must be in [2, {min(MAX_HEADER_BYTES, size - 8)}] (the file has {size} bytes)")
            text = f.read(n)
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        header = json.loads(text, parse_constant=_no_constants)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(path, f"header is not JSON ({str(exc).splitlines()[0][:80]})") from None
    if not isinstance(header, dict):
        raise _bad(path, "header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise _bad(path, "__metadata__ must map strings to strings")
    base, data_len = 8 + n, size - 8 - n
    entries = {}
    for name, info in header.items():
        entries[name] = _entry(path, name, info, base, data_len)
    return entries, meta


def _entry(path: Path, name: str, info: Any, base: int, data_len: int) -> TensorEntry:
    where = f"tensor {name!r}"
    if not isinstance(info, dict):
        raise _bad(path, f"{where}: entry must be an object with dtype, shape, data_offsets")
    dtype, shape, offs = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if dtype not in DTYPE_BYTES:
        raise _bad(path, f"{where}: dtype {dtype!r} must be one of {', '.join(DTYPE_BYTES)}")
    if not isinstance(shape, list) or len(shape) > MAX_NDIM or not all(_is_int(d) and d >= 0 for d in shape):
        raise _bad(path, f"{where}: shape {json.dumps(shape)[:60]} must be a list of at most {MAX_NDIM} integers >= 0")
    if not isinstance(offs, list) or len(offs) != 2 or not all(_is_int(o) for o in offs) or not 0 <= offs[0] <= offs[1] <= data_len:
        raise _bad(path, f"{where}: data_offsets {json.dumps(offs)[:60]} must be two integers 0 <= begin <= end <= {data_len} (the data section)")
    need = math.prod(shape) * DTYPE_BYTES[dtype]
    if offs[1] - offs[0] != need:
        raise _bad(path, f"{where}: {offs[1] - offs[0]} bytes stored, its shape {shape} x {dtype} needs {need}")
    return TensorEntry(name, dtype, tuple(shape), base + offs[0], base + offs[1])


def read_tensor_bytes(f, entry: TensorEntry) -> bytes:
    """The raw bytes of a (validated, so bounded by the file) tensor from the open file ``f``."""
    f.seek(entry.start)
    data = f.read(entry.end - entry.start)
    if len(data) != entry.end - entry.start:
        raise UserError(f"{getattr(f, 'name', 'file')}: tensor {entry.name!r} is truncated")
    return data


# ---------------------------------------------------------------------------- GGUF
def open_gguf(path: str | os.PathLike):
    """A ``gguf.GGUFReader`` of ``path``; a damaged file is one line (the reader raises many types)."""
    import gguf

    try:
        return gguf.GGUFReader(str(path))
    except Exception as exc:  # noqa: BLE001 - the reader raises several types on damaged files
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{path} is not a readable GGUF file ({msg[:120]})") from None


_MISSING = object()


def gguf_value(reader, key: str) -> Any:
    """The value of a GGUF metadata key, or None when absent (or unreadable)."""
    field = reader.fields.get(key)
    if field is None:
        return None
    try:
        return field.contents()
    except Exception:  # noqa: BLE001 - a damaged field reads as absent; the caller names what it needs
        return None


def gguf_int(reader, key: str, where: str, lo: int, hi: int, default: Any = _MISSING) -> int:
    """An integer GGUF metadata key in ``[lo, hi]``; absent -> ``default`` (required without one)."""
    v = gguf_value(reader, key)
    if v is None:
        if default is _MISSING:
            raise UserError(f"{where}: GGUF metadata key {key} is missing (an integer in [{lo}, {hi}] is required)")
        return default
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or not lo <= int(v) <= hi:
        raise UserError(f"{where}: GGUF metadata {key} must be an integer in [{lo}, {hi}], got {v!r}"[:300])
    return int(v)
