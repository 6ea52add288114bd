"""Pure tensor functions shared by the score-based methods (magnitude, Wanda, OWL).

Masks are bool ``[out, in]``, 1 = kept.  A *score* is ``[out, in]``: lower = less important.
Ties are broken by column index (stable sort), so masks are deterministic.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from pruning.device import autocast_context
from pruning.methods.base import BlockInputs, BlockJob


def prune_count(cols: int, sparsity: float) -> int:
    """Entries pruned per row: ``int(cols * sparsity)`` (the reference's truncation)."""
    return int(cols * sparsity)


def row_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Prune the ``int(C * sparsity)`` lowest scores of every row (stable ascending sort)."""
    rows, cols = scores.shape
    k = prune_count(cols, sparsity)
    keep = torch.ones_like(scores, dtype=torch.bool)
    if k:
        idx = torch.sort(scores, dim=1, stable=True)[1][:, :k]  # (out, k)
        keep.scatter_(1, idx, False)
    return keep


def layer_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Prune exactly ``int(out * in * sparsity)`` lowest scores of the whole layer (stable sort).

    The Wanda repo's magnitude baseline thresholds with ``<=``, which prunes every tie of the
    threshold too; an exact count keeps realised sparsity equal to the target.
    """
    flat = scores.reshape(-1)
    k = int(flat.numel() * sparsity)
    keep = torch.ones_like(flat, dtype=torch.bool)
    if k:
        keep[torch.sort(flat, stable=True)[1][:k]] = False
    return keep.reshape(scores.shape)


def nm_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep the ``n`` highest scores of every ``m`` consecutive input columns of every row (N:M =
    n KEPT of m), i.e. prune the ``m - n`` lowest (stable ascending sort, so ties prune the earlier column)."""
    rows, cols = scores.shape
    if cols % m:
        raise ValueError(f"n:m pattern {n}:{m} needs in-features divisible by {m}, got {cols}")
    groups = scores.reshape(rows, cols // m, m)  # (out, in/m, m)
    idx = torch.sort(groups, dim=2, stable=True)[1][:, :, : m - n]  # (out, in/m, m - n) pruned
    keep = torch.ones_like(groups, dtype=torch.bool)
    keep.scatter_(2, idx, False)
    return keep.reshape(rows, cols)


def mask_from_scores(scores: torch.Tensor, sparsity: float, pattern: tuple[int, int] | None, scope: str = "row") -> torch.Tensor:
    """Keep mask from scores: n:m when ``pattern`` is set, else per-row (or per-layer) unstructured."""
    if pattern is not None:
        return nm_mask(scores, *pattern)
    return row_mask(scores, sparsity) if scope == "row" else layer_mask(scores, sparsity)


@torch.no_grad()
def accumulate_inputs(
    block: nn.Module,
    inputs: BlockInputs,
    job: BlockJob,
    names: tuple[str, ...],
    update: Callable[[str, torch.Tensor], None],
    on_output: Callable[[int, torch.Tensor], None] | None = None,
) -> None:
    """Run the block over every calibration window; call ``update(name, X)`` with each hooked
    linear's input ``X`` as fp32 ``(tokens, in)``, one window at a time, and ``on_output(j, out)``
    (when given) with window ``j``'s block output ``(1, T, hidden)`` (e.g. to keep it as a target).
    ``job.input_observer`` (when set) sees every ``(name, X)`` too, before ``update``."""
    observer = job.input_observer  # e.g. the weight update's Gram collector, fed by the same pass

    def hook(name):
        def fn(_mod, args, _out):
            x = args[0].detach()
            x = x.reshape(-1, x.shape[-1]).float()  # (B*T, in)
            if observer is not None:
                observer(name, x)
            update(name, x)

        return fn

    handles = [block.get_submodule(n).register_forward_hook(hook(n)) for n in names]
    try:
        for j in range(len(inputs)):
            with autocast_context(job.device, job.autocast_dtype):
                out = inputs.run(block, j, job.device)
            if on_output is not None:
                on_output(j, out)
    finally:
        for h in handles:
            h.remove()


class InputNormStat:
    """Wanda's statistic per input column: running mean over samples of ``||X_c||^2`` (fp32).

    One sample = one calibration window; ``||X_c||^2`` sums over its tokens (the reference's
    ``scaler_row``).
    """

    def __init__(self):
        self.stat: dict[str, torch.Tensor] = {}
        self.count: dict[str, int] = {}

    def update(self, name: str, x: torch.Tensor) -> None:  # x: (tokens, in)
        # The reference's arithmetic, operation for operation, so masks match it (and BESA's
        # frozen mode) bit for bit.
        n = self.count.get(name, 0)
        s = self.stat.get(name)
        if s is None:
            s = torch.zeros(x.shape[1], dtype=torch.float32, device=x.device)
        s *= n / (n + 1)
        n += 1
        s += torch.norm(x.t(), p=2, dim=1) ** 2 / n
        self.stat[name] = s
        self.count[name] = n


def wanda_scores(weight: torch.Tensor, stat: torch.Tensor) -> torch.Tensor:
    """``|W| * sqrt(stat)`` broadcast over rows: ``(out, in)`` fp32."""
    return weight.detach().float().abs() * torch.sqrt(stat.to(weight.device).float()).reshape(1, -1)
