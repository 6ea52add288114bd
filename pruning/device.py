"""The compute device and dtype of a run: ``--device`` / ``--dtype`` to torch objects, and the
autocast context every forward pass uses (the driver, the methods' statistics passes, perplexity).

Below the driver and the methods: imports nothing of the project but the error type.
"""

from __future__ import annotations

import contextlib

import torch

from besa_common.errors import UserError

# --dtype -> autocast dtype (None = plain fp32); weights and buffers stay fp32 either way.
AUTOCAST_DTYPES = {"float32": None, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu.  ``cuda`` without a GPU is a UserError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    if name not in ("cpu", "cuda"):
        raise UserError(f"device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def autocast_context(device: torch.device, dtype: torch.dtype | None):
    """fp16/bf16 autocast on ``device`` or a no-op for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
