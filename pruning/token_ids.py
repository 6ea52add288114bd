"""Token-id files for token-exact comparisons with other tools (``--calib-ids``, ``--eval-ids``).

A file is a ``.npy`` array of integer token ids, shape ``[n, T]``: ``n`` windows of ``T`` tokens
(calibration windows for ``besa prune --calib-ids``, evaluation windows for ``besa eval
--eval-ids``).  It is loaded with ``numpy.load(allow_pickle=False)`` (never unpickled) and checked
before any slow work: integer dtype, 2-D, at least one window of at least 2 tokens, every id in
``[0, vocab_size)`` of the model's ``config.json``.  Runs record the file's path, SHA-256 and
shape, so two tools can be shown to have seen exactly the same tokens.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from besa_common.errors import UserError
from pruning.model_spec import resolve_model


def load_token_ids(path: str | os.PathLike, flag: str) -> tuple[np.ndarray, dict[str, Any]]:
    """``(ids int64 [n, T], record)``; ``record`` = ``{"path", "sha256", "shape"}`` for the manifest.

    ``flag`` names the option in error messages (``--calib-ids``).
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{flag}: {p} not found")
    data = p.read_bytes()
    if data[:2] == b"PK":
        raise UserError(f"{flag}: {p} is a .npz archive; save one [n, T] array with numpy.save")
    if data[:6] != b"\x93NUMPY":
        raise UserError(f"{flag}: {p} is not a readable .npy file (no NumPy header)")
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:  # object arrays need pickle: refused
        raise UserError(f"{flag}: {p} is not a plain numeric .npy array ({str(exc).splitlines()[0]})") from None
    except Exception as exc:
        raise UserError(f"{flag}: {p} is not a readable .npy file ({type(exc).__name__})") from None
    if arr.dtype.kind not in "iu":
        raise UserError(f"{flag}: {p} has dtype {arr.dtype}; token ids must be integers (int32/int64)")
    if arr.ndim != 2:
        raise UserError(f"{flag}: {p} has shape {list(arr.shape)}; expected [n, T] (n windows of T tokens)")
    if arr.shape[0] < 1 or arr.shape[1] < 2:
        raise UserError(f"{flag}: {p} has shape {list(arr.shape)}; needs at least 1 window of at least 2 tokens")
    if arr.dtype.kind == "u" and arr.max() > np.iinfo(np.int64).max:
        raise UserError(f"{flag}: {p} holds token ids beyond int64")
    ids = arr.astype(np.int64)
    if ids.min() < 0:
        raise UserError(f"{flag}: {p} holds a negative token id ({int(ids.min())})")
    record = {"path": str(p), "sha256": hashlib.sha256(data).hexdigest(), "shape": [int(ids.shape[0]), int(ids.shape[1])]}
    return ids, record


def model_vocab_size(model_spec: str) -> int:
    """``vocab_size`` from the model's ``config.json`` (the embedding rows), without loading weights."""
    cfg_path = resolve_model(model_spec) / "config.json"
    try:
        cfg = json.loads(cfg_path.read_text())
        return int(cfg.get("vocab_size") or cfg["text_config"]["vocab_size"])
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{cfg_path}: no vocab_size to check token ids against") from None


def check_vocab(ids: np.ndarray, vocab_size: int, flag: str, path: Any) -> None:
    """Every id below ``vocab_size`` (an id past the embedding would crash mid-run)."""
    top = int(ids.max())
    if top >= vocab_size:
        raise UserError(f"{flag}: {path} holds token id {top}, outside the model's vocabulary [0, {vocab_size})")
