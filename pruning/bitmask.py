"""compressed-tensors' sparse bitmask tensors for ONE dense weight ``W [out, in]`` (PyTorch layout):
compress (``sparse-bitmask``; ``sparse-24-bitmask`` under a 2:4 mask) and decompress.  The format
is described in :mod:`pruning.export` (which writes whole checkpoints with it);
:func:`pruning.models.load_exported` reads them back.
"""

from __future__ import annotations

import torch

from besa_common.errors import UserError

BITMASK_PARAMS = ("shape", "compressed", "bitmask", "row_offsets")
# compressed-tensors sparsity format -> the tensors stored per compressed linear
SPARSE_PARAMS = {"sparse-bitmask": BITMASK_PARAMS, "sparse-24-bitmask": ("shape", "compressed", "bitmask")}


def bitmask_compress(w: torch.Tensor, keep: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Compress one dense 2-D weight ``[out, in]`` into the four sparse-bitmask tensors (local names).

    ``keep`` (bool ``[out, in]``, the masks file's mask): the bitmask is the mask itself, so a kept
    weight that happens to be 0 (quantized) keeps its bit and extraction gives back the exact mask;
    without it the bitmask is ``W != 0``."""
    from compressed_tensors.utils.helpers import pack_bitmasks

    if w.ndim != 2:
        raise ValueError(f"bitmask_compress: expected a 2-D weight, got shape {tuple(w.shape)}")
    w = w.detach().cpu().contiguous()
    nonzero = w != 0 if keep is None else torch.as_tensor(keep, dtype=torch.bool)  # (out, in)
    row_counts = nonzero.sum(dim=1)
    return {
        "shape": torch.tensor(list(w.shape), dtype=torch.int64).reshape(-1, 1),  # (2, 1)
        "compressed": w[nonzero].contiguous(),  # (nnz,), row-major
        "bitmask": pack_bitmasks(nonzero).contiguous(),  # (out, ceil(in/8)) uint8
        "row_offsets": (torch.cumsum(row_counts, 0) - row_counts).to(torch.int64),  # (out,)
    }


def is_24(keep: torch.Tensor) -> bool:
    """Exactly 2 kept in every 4 consecutive input weights of every row (N:M = N kept of M)."""
    return keep.ndim == 2 and keep.shape[1] % 4 == 0 and bool((keep.reshape(keep.shape[0], -1, 4).sum(-1) == 2).all())


def bitmask24_compress(w: torch.Tensor, keep: torch.Tensor) -> dict[str, torch.Tensor]:
    """compressed-tensors ``sparse-24-bitmask`` tensors of ``w [out, in]`` under a 2:4 ``keep``:
    ``shape`` int64 [2, 1], ``compressed`` [out, in/2] (the kept values, row-major), ``bitmask``
    uint8 [out, ceil(in/8)] (``keep`` packed, little bit order) — what vLLM's 2:4 kernels load."""
    from compressed_tensors.utils.helpers import pack_bitmasks

    keep = torch.as_tensor(keep, dtype=torch.bool)
    if not is_24(keep):
        raise ValueError("bitmask24_compress: the mask is not 2:4")
    w = w.detach().cpu().contiguous()
    return {
        "shape": torch.tensor(list(w.shape), dtype=torch.int64).reshape(-1, 1),
        "compressed": w[keep].reshape(w.shape[0], w.shape[1] // 2).contiguous(),
        "bitmask": pack_bitmasks(keep).contiguous(),
    }


def bitmask_decompress(parts: dict[str, torch.Tensor], name: str = "?") -> torch.Tensor:
    """Inverse of :func:`bitmask_compress`; checks the pieces agree (a corrupt file -> UserError)."""
    from compressed_tensors.utils.helpers import unpack_bitmasks

    shape = [int(x) for x in parts["shape"].reshape(-1).tolist()]
    bitmask, values = parts["bitmask"], parts["compressed"].reshape(-1)
    if len(shape) != 2 or tuple(bitmask.shape) != (shape[0], (shape[1] + 7) // 8):
        raise UserError(f"compressed weight {name}: bitmask shape {tuple(bitmask.shape)} does not fit dense shape {shape}")
    keep = unpack_bitmasks(bitmask.to(torch.uint8), shape)  # (out, in) bool
    if int(keep.sum()) != values.numel():
        raise UserError(f"compressed weight {name}: bitmask has {int(keep.sum())} set bits but {values.numel()} values")
    w = torch.zeros(shape, dtype=values.dtype)
    w[keep] = values
    return w
