"""Perplexity by the standard protocol (``docs/besa.md``, section 6): non-overlapping windows of ``seqlen`` tokens.

``ppl = exp(Σ_w NLL_w / (windows × seqlen))`` where ``NLL_w`` is the window's mean next-token
cross-entropy (nats) times ``seqlen`` — the reference's arithmetic, so numbers compare with the
papers'.  Windows that do not fit are dropped (``windows = tokens // seqlen``, optionally capped
by ``max_windows``, taken from the start of the text).  Always report dataset, seqlen and windows
beside a ppl.
"""

from __future__ import annotations

import hashlib
import math
import sys

import torch

from besa_common.errors import UserError
from pruning.device import autocast_context


@torch.no_grad()
def perplexity(
    model,
    tokens: torch.Tensor,
    seqlen: int,
    max_windows: int | None = None,
    device: str | torch.device = "cpu",
    autocast_dtype: torch.dtype | None = None,
    progress: bool = True,
) -> dict:
    """Perplexity of ``model`` on ``tokens`` ``(1, L)``: ``{"ppl", "seqlen", "windows", "tokens", "nll",
    "window_nll", "window_tokens", "windows_sha256"}``.

    ``tokens`` = the number of tokens scored (windows × seqlen); ``nll`` = mean NLL per token (nats);
    ``window_nll`` = each window's summed NLL in the same arithmetic (mean × seqlen), ``window_tokens``
    its token count (seqlen), so ``ppl = exp(Σ window_nll / Σ window_tokens)`` and a bootstrap over
    windows (:mod:`besa_common.bootstrap`) can resample them; ``windows_sha256`` = SHA-256 of the
    scored windows' token ids (int64): two evaluations with the same digest scored the same windows
    and can be compared paired.  The model is moved to ``device`` for the evaluation.
    """
    from tqdm import tqdm

    if seqlen < 2:
        raise UserError(f"seqlen must be at least 2, got {seqlen}")
    if max_windows is not None and max_windows < 1:
        raise UserError(f"max-windows must be positive, got {max_windows}")
    tokens = tokens.reshape(1, -1)
    windows = tokens.shape[1] // seqlen
    if max_windows is not None:
        windows = min(windows, max_windows)
    if windows == 0:
        raise UserError(f"the text has {tokens.shape[1]} tokens, fewer than one window of seqlen={seqlen}")
    device = torch.device(device)
    model.eval()
    model.to(device)
    per_window: list[float] = []
    for w in tqdm(range(windows), desc="ppl", unit="window", disable=not progress, file=sys.stderr):
        batch = tokens[:, w * seqlen : (w + 1) * seqlen].to(device)  # (1, T)
        with autocast_context(device, autocast_dtype):
            logits = model(input_ids=batch, use_cache=False).logits  # (1, T, V)
        shift_logits = logits[:, :-1, :].float()
        shift_labels = batch[:, 1:]
        loss = torch.nn.functional.cross_entropy(shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1))
        per_window.append(float(loss) * seqlen)
    nll = sum(per_window) / (windows * seqlen)  # the same left-to-right sum as before the per-window record
    scored = tokens[:, : windows * seqlen].to(torch.int64).contiguous().numpy().tobytes()
    return {
        "ppl": math.exp(nll),
        "seqlen": seqlen,
        "windows": windows,
        "tokens": windows * seqlen,
        "nll": nll,
        "window_nll": per_window,
        "window_tokens": [seqlen] * windows,
        "windows_sha256": hashlib.sha256(scored).hexdigest(),
    }
