"""BESA's pure tensor functions: scores, candidate sparsities, hard/soft/straight-through masks, losses,
and the exact-budget finalise.  No modules, no I/O; the lifecycle lives in ``pruning/methods/besa/method.py``.

Conventions: a weight is ``[R, C]`` (out rows, in columns); masks are ``keep`` (1 = kept); a row's
*sparsity* is the fraction of its C entries pruned; in each row the entries are ranked by ascending
importance score (stable sort, so ties keep column order) and the ``k_r`` lowest-ranked are pruned.
Notation follows the paper (Xu et al., ICLR 2024): candidates ``c_d``, coefficients ``p_{r,d}``,
expected row sparsity ``s_r = sum_d p_{r,d} c_d``.
"""

from __future__ import annotations

import torch

D_DEFAULT = 101  # candidates c_d = 1.00, 0.99, ..., 0.00


def candidates(D: int = D_DEFAULT) -> torch.Tensor:
    """Candidate sparsities ``c_d = (D-1-d)/(D-1)``, d = 0..D-1 (1.00 down to 0.00), fp32 ``[D]``."""
    return (torch.arange(D - 1, -1, -1, dtype=torch.float64) / (D - 1)).float()


def candidate_counts(C: int, D: int = D_DEFAULT) -> torch.Tensor:
    """``floor(C * c_d)`` in exact integer arithmetic, int64 ``[D]`` (non-increasing in d).

    Integer arithmetic because ``C * 0.29`` in floating point can land just below an integer and
    floor one entry short.
    """
    return (C * torch.arange(D - 1, -1, -1, dtype=torch.int64)) // (D - 1)


def wanda_score(W: torch.Tensor, stat: torch.Tensor) -> torch.Tensor:
    """Importance ``|W_rc| * sqrt(stat_c)``, fp32 ``[R, C]``; ``stat``: mean over samples of ||X_c||^2, ``[C]``."""
    return W.detach().float().abs() * torch.sqrt(stat.float().reshape(1, -1))


def stable_order(score: torch.Tensor) -> torch.Tensor:
    """``torch.sort(score, dim=1, stable=True).indices`` (ascending, ties in column order), int64 ``[R, C]``.

    On CPU the same permutation comes ~3x faster from numpy's vectorised (AVX2/AVX-512) sort of
    unique int64 keys ``(order-preserving int32 image of the fp32 score) * 2^32 + column``: the keys
    are distinct, so an unstable sort of them IS the stable sort of the scores.  -0.0 is folded into
    +0.0 (torch treats them as ties); NaNs sort last like torch's.  Other devices use torch.sort.
    """
    R, C = score.shape
    if score.device.type != "cpu" or C >= 2**31:
        return torch.sort(score, dim=1, stable=True).indices
    import numpy as np

    score = score.detach().float()
    score = torch.where(score.isnan(), float("nan"), score + 0.0)  # one NaN bit pattern; +0.0: -0.0 -> +0.0
    bits = score.contiguous().view(torch.int32).to(torch.int64)
    # IEEE order -> integer order: negative floats count down, so flip their magnitude bits.
    bits = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
    keys = (bits << 32) | torch.arange(C, dtype=torch.int64).reshape(1, -1)
    keys = torch.from_numpy(np.sort(keys.numpy(), axis=1))
    return keys & 0xFFFFFFFF


def sort_ranks(score: torch.Tensor) -> torch.Tensor:
    """Rank of every entry inside its row by ascending score (stable), int64 ``[R, C]``.

    ``rank[r, c] = j`` means column c is the j-th least important of row r.  Computed with one stable
    sort (:func:`stable_order`) and one scatter (the inverse permutation), vectorised over rows.
    """
    R, C = score.shape
    order = stable_order(score)  # (R, C): sorted position -> column
    pos = torch.arange(C, device=score.device).expand(R, C)
    return torch.empty_like(order).scatter_(1, order, pos)  # (R, C): column -> sorted position


def compact(t: torch.Tensor, top: int) -> torch.Tensor:
    """Non-negative integers ``t`` (all ``<= top``) in the narrowest of uint8 / int16 / int32 / int64
    that holds ``top``; values unchanged.

    BESA keeps a rank and a soft-mask index per weight for a whole block: as int64 that is 16 bytes
    per weight (four times the fp32 weight itself); compact, 3 (rank int16 for C < 32768, index uint8
    for D < 256).  Consumers widen to int64 only where torch demands it (gather/scatter), one layer at
    a time.
    """
    for dtype in (torch.uint8, torch.int16, torch.int32):
        if top <= torch.iinfo(dtype).max:
            return t.to(dtype)
    return t.to(torch.int64)


# Entries per row chunk of the row-wise passes over a layer (the ranking, the straight-through
# backward): on CPU a few MiB of int64 temporaries that stay in cache; a GPU wants few, large kernels
# (at 2^18 a LLaMA-7B MLP linear would be ~170 chunks per step).  Results do not depend on it.
ROW_CHUNK = {"cpu": 1 << 18}
ROW_CHUNK_OTHER = 1 << 24


def row_chunk(C: int, device: torch.device) -> int:
    """Rows per chunk for a ``[R, C]`` layer on ``device`` (at least 1)."""
    return max(1, ROW_CHUNK.get(torch.device(device).type, ROW_CHUNK_OTHER) // max(C, 1))


def layer_ranking(W: torch.Tensor, stat: torch.Tensor, D: int = D_DEFAULT, chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """What BESA keeps per layer for a whole block: ``(rank, index, index_max)``.

    ``rank = compact(sort_ranks(wanda_score(W, stat)), C)``, ``index = compact(soft_index(rank,
    candidate_counts(C, D)), D)`` and ``index_max = max(index)``, computed ``chunk`` entries' worth of
    rows at a time (default :func:`row_chunk`): every step is row-wise, so the result is identical, and the int64 temporaries of
    the sort stay a few MiB instead of several copies of the layer.
    """
    R, C = W.shape
    m = soft_index(torch.arange(C, device=W.device).reshape(1, -1), candidate_counts(C, D))[0]  # (C,) index of sorted position j
    rank = torch.empty((R, C), dtype=compact(torch.zeros(0), C).dtype, device=W.device)
    index = torch.empty((R, C), dtype=compact(torch.zeros(0), D).dtype, device=W.device)
    rows = row_chunk(C, W.device) if chunk is None else max(1, chunk // max(C, 1))
    for r0 in range(0, R, rows):
        rk = sort_ranks(wanda_score(W[r0 : r0 + rows], stat))  # (rows, C) int64
        rank[r0 : r0 + rows] = rk
        index[r0 : r0 + rows] = m[rk]
    index_max = int(m[0]) if R and C else 0  # sorted position 0 exists in every row; m is non-increasing
    return rank, index, index_max


def coefficients(logits: torch.Tensor, smoothing: bool = True) -> torch.Tensor:
    """``p = softmax(sigmoid(logits))`` (sigmoid smoothing, the reference default) or ``softmax(logits)``.

    ``logits``: ``[rows, D]`` (rows = R for row-wise, 1 for layer-wise).  Returns fp32, rows sum to 1.
    """
    z = torch.sigmoid(logits.float()) if smoothing else logits.float()
    return torch.softmax(z, dim=-1)


def expected_sparsity(p: torch.Tensor, cands: torch.Tensor) -> torch.Tensor:
    """``s_r = sum_d p_{r,d} c_d``, ``[rows]``, differentiable in ``p``."""
    return p @ cands.to(p.device, p.dtype)


def row_counts(s: torch.Tensor, C: int, R: int) -> torch.Tensor:
    """Entries to prune per row, ``floor(s_r * C)`` clamped to [0, C], int64 ``[R]`` (broadcasts a layer-wise s)."""
    k = torch.floor(s.detach().double() * C).clamp(0, C).to(torch.int64)
    return k.expand(R) if k.numel() == 1 else k


def hard_keep(rank: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Bool keep mask ``[R, C]``: entry (r, c) is pruned iff ``rank[r, c] < k_r`` (the k_r lowest scores).

    ``rank`` may be :func:`compact` (with ``top = C``, so every ``k_r`` in [0, C] fits its dtype)."""
    return rank >= k.to(rank.device, rank.dtype).reshape(-1, 1)


def soft_index(rank: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Per-entry index into the cumulative coefficients, int64 ``[R, C]`` (precomputed once per layer).

    The sorted position j is pruned by candidate d iff ``j < floor(C c_d)``; counts are non-increasing in
    d, so those candidates are the prefix ``d < m_j`` with ``m_j = #{d: floor(C c_d) > j}``.
    """
    C = rank.shape[1]
    j = torch.arange(C, device=rank.device)
    m = (counts.to(rank.device).reshape(-1, 1) > j.reshape(1, -1)).sum(dim=0)  # (C,) in [0, D]
    return m[rank]  # (R, C)


def soft_keep(p: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Soft keep probability ``1 - sum_d p_{r,d} 1[rank < floor(C c_d)]`` in column order, fp32 ``[R, C]``.

    ``p``: ``[rows, D]`` (rows = R, or 1 broadcast to every row); ``index`` from :func:`soft_index`
    (any integer dtype, e.g. :func:`compact`).  One cumulative sum and one gather per step.
    """
    R = index.shape[0]
    cp = torch.cumsum(p, dim=-1)  # (rows, D): cp[:, d] = sum_{d' <= d} p
    cp = torch.cat([torch.zeros_like(cp[:, :1]), cp], dim=-1).expand(R, -1)  # (R, D + 1), cp[:, 0] = 0
    return 1.0 - torch.gather(cp, 1, index.long())


def ste_mask(hard: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    """Straight-through mask: the hard 0/1 values forward, the soft mask's gradient backward."""
    return hard.to(soft.dtype) - soft.detach() + soft


class _SteMaskedWeight(torch.autograd.Function):
    """``W * ste_mask(hard, 1 - gather(cp, index))`` with the same values and gradients, in fewer passes.

    Forward: the straight-through value ``(h - s) + s`` equals ``h`` exactly in fp32 whenever the
    soft value ``s`` lies in [0, 1] (h = 0: ``-s + s = 0``; h = 1, s >= 1/2: ``1 - s`` is exact
    (Sterbenz); s < 1/2: ``fl(1 - s)`` errs by at most 2^-25 and ``+ s`` rounds back to 1), so the
    forward is ``W * hard`` and the soft mask is never built.  ``cp`` outside [0, 1] (float noise in a
    cumulative sum without smoothing) falls back to the literal formula.
    Backward: d/dcp of ``1 - cp[index]`` is ``-scatter_add(grad * W)``; negating the small ``[R, D+1]``
    result instead of every entry is exact (rounding is symmetric), so gradients match autograd's
    bit for bit.  Nothing ``[R, C]`` is saved: ``W`` and ``index`` live for the whole block anyway
    (``index`` in any integer dtype).  The backward runs over row chunks (:func:`row_chunk`): the
    scatter adds each row's entries in column order either way, so the sums are the same bits, while
    ``grad * W`` and the int64 index the scatter needs are a few MiB instead of two copies of the layer.
    """

    @staticmethod
    def forward(ctx, W, hard, cp, index, index_max):
        ctx.save_for_backward(W, index)
        ctx.cp_shape = cp.shape
        used = cp[:, : index_max + 1]  # the columns index can reach (the last, sum p ~ 1 + noise, is not)
        if bool(used.min() >= 0) and bool(used.max() <= 1):
            return W * hard
        soft = 1.0 - torch.gather(cp, 1, index.long())
        return W * (hard.to(soft.dtype) - soft + soft)

    @staticmethod
    def backward(ctx, grad):
        W, index = ctx.saved_tensors
        R, C = W.shape
        gcp = torch.zeros(ctx.cp_shape, dtype=torch.result_type(grad, W), device=grad.device)
        rows = row_chunk(C, W.device)
        for r0 in range(0, R, rows):
            r1 = r0 + rows
            gcp[r0:r1].scatter_add_(1, index[r0:r1].long(), grad[r0:r1] * W[r0:r1])  # grad * W = d loss / d mask
        return None, None, gcp.neg_(), None, None


def masked_weight(W: torch.Tensor, hard: torch.Tensor, p: torch.Tensor, index: torch.Tensor, index_max: int | None = None) -> torch.Tensor:
    """``W * ste_mask(hard, soft_keep(p, index))`` (fp32 ``[R, C]``), bit-identical in value and gradient.

    ``W``: fp32 ``[R, C]`` (no gradient); ``hard``: bool keep mask; ``p``: ``[rows, D]`` coefficients
    (gradient flows to them); ``index`` from :func:`soft_index` (any integer dtype, e.g. :func:`compact`),
    ``index_max`` its maximum (computed
    when not given; pass it to save a pass per step).  See :class:`_SteMaskedWeight`.
    """
    R = index.shape[0]
    if index_max is None:
        index_max = int(index.max()) if index.numel() else 0
    cp = torch.cumsum(p, dim=-1)
    cp = torch.cat([torch.zeros_like(cp[:, :1]), cp], dim=-1).expand(R, -1)  # (R, D + 1), as in soft_keep
    return _SteMaskedWeight.apply(W.detach(), hard, cp, index, int(index_max))


def reconstruction_loss(out: torch.Tensor, target: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Channel-normalised L2: ``sum_{t,h} ((target - out)_{t,h} / ||target_{:,h}||)^2 / H``, fp32 scalar.

    ``out``, ``target``: ``(..., H)``; the per-channel norm runs over every token of the mini-batch.
    """
    out = out.float().reshape(-1, out.shape[-1])  # (tokens, H)
    target = target.float().reshape(-1, target.shape[-1])
    norm2 = (target * target).sum(dim=0).clamp(min=eps)  # (H,)
    return (((target - out) ** 2).sum(dim=0) / norm2).sum() / out.shape[-1]


def sparsity_penalty(block_sparsity: torch.Tensor, target: float, beta: float) -> torch.Tensor:
    """``beta * ((block_sparsity - S) / S)^2`` — the soft budget."""
    return beta * ((block_sparsity - target) / target) ** 2


def exact_counts(desired: torch.Tensor, cap: torch.Tensor, total: int) -> torch.Tensor:
    """Integer counts ``k`` with ``sum k = total``, ``0 <= k <= cap``, proportional to ``desired``.

    ``desired``: non-negative continuous prune counts per row (e.g. ``s_r * C``); ``cap``: max per row (C).
    Scales all rows by one factor (rows that hit their cap are fixed and the rest rescaled, water-filling),
    then rounds by largest remainder (ties -> lower index).  Deterministic.  Keeps the learned allocation's
    shape: rows the method wanted sparser stay sparser.
    """
    x = desired.detach().double().clamp(min=0).flatten()
    cap_d = cap.double().flatten()
    total = int(total)
    if not 0 <= total <= int(cap_d.sum().item()):
        raise ValueError(f"exact_counts: total {total} outside [0, {int(cap_d.sum().item())}]")
    # A row the method wants dense (0) may still have to take some of the budget: a tiny floor keeps
    # every row growable so the water-filling always reaches ``total``.
    x = torch.where(cap_d > 0, x.clamp(min=1e-9), torch.zeros_like(x))
    y = torch.zeros_like(x)
    sat = torch.zeros_like(x, dtype=torch.bool)
    for _ in range(x.numel() + 1):
        free = ~sat & (cap_d > 0)
        room = total - cap_d[sat].sum()
        alpha = room / x[free].sum() if free.any() else torch.tensor(0.0, dtype=torch.float64)
        y = torch.where(sat, cap_d, alpha * x)
        newly = free & (y > cap_d)
        if not newly.any():
            break
        sat |= newly
    y = torch.minimum(y, cap_d)
    k = torch.floor(y + 1e-9).clamp(max=cap_d)
    rem = total - int(k.sum().item())
    if rem > 0:
        frac = torch.where(k < cap_d, y - k, torch.full_like(y, -1.0))
        order = torch.sort(-frac, stable=True).indices
        k[order[:rem]] += 1
    elif rem < 0:  # floor(y + eps) overshot by float noise: take back from the smallest remainders
        frac = torch.where(k > 0, y - k, torch.full_like(y, 2.0))
        order = torch.sort(frac, stable=True).indices
        k[order[:-rem]] -= 1
    return k.to(torch.int64).reshape(desired.shape)
