"""Learned n:m sparsity for BESA: pure tensor functions (no modules, no I/O).

The idea (BESA's learnable allocation carried over to semi-structured sparsity): every group of ``M``
consecutive input weights of a row keeps exactly ``K`` of them, so a group has ``P = C(M, K)`` possible
*keep patterns* (6 for 2:4).  Each group owns a learnable logit vector over its patterns; the
probabilities ``q = softmax(logits)`` give a soft keep mask ``soft = q @ patterns`` (the probability
that each weight is kept) and the hard mask is the most probable pattern.  The block reconstruction
loss (the same one as unstructured BESA) trains the logits; every group keeps exactly ``K`` weights
whatever the logits, so no sparsity penalty is needed.

Straight-through, no Gumbel noise: the forward uses the hard pattern (``W * hard``, exactly), the
backward the soft mask's gradient, so d loss / d q_p = sum over the weights pattern p keeps of
d loss / d mask -- the first-order estimate of the loss if the group switched to p.  Gumbel-softmax
sampling would make each step's mask random; with one epoch over a small calibration set (tens of
steps per block) the noise would swamp that signal, and deterministic steps keep runs reproducible
without a generator.  Prodigy (Adam-like, per-logit normalised steps) then moves each group's logits.

Initialisation: ``logits_p = scale * (sum of the within-group ranks of the weights p keeps)``, the rank
being the position in the group's stable ascending sort of the Wanda score ``|W| sqrt(stat)``.  The
pattern keeping the K highest-ranked weights -- Wanda's n:m choice, ties broken the same way -- has the
unique largest sum, so the initial hard mask is exactly Wanda's (no learning = Wanda n:m, bit for bit),
and patterns that swap a good weight for a slightly worse one start close behind it.

Conventions: weights ``[R, C]`` (out rows, in columns), groups along the columns (``C % M == 0``),
``G = C / M`` groups per row; masks are keep masks (1 = kept); ``K`` is the number KEPT per group.
"""

from __future__ import annotations

import itertools
import math

import torch

MAX_PATTERNS = 128  # C(M, K) above this is refused: logits and optimiser state grow with P per group


def pattern_count(m: int, keep: int) -> int:
    """``C(m, keep)``: keep patterns per group."""
    return math.comb(m, keep)


def keep_patterns(m: int, keep: int) -> torch.Tensor:
    """All ways to keep ``keep`` of ``m`` positions, bool ``[P, m]``, lexicographic in the kept positions."""
    if not 0 < keep < m:
        raise ValueError(f"n:m needs 0 < kept < group size, got {keep} of {m}")
    pats = torch.zeros(pattern_count(m, keep), m, dtype=torch.bool)
    for i, kept in enumerate(itertools.combinations(range(m), keep)):
        pats[i, list(kept)] = True
    return pats


def group_ranks(score: torch.Tensor, m: int) -> torch.Tensor:
    """Within-group rank of every entry by ascending score (stable: ties keep column order), int64 ``[R, G, m]``.

    The same sort as Wanda's n:m (``pruning.methods.scoring.nm_mask``), whose pruned entries are the
    ranks ``< m - K``.
    """
    R, C = score.shape
    groups = score.reshape(R, C // m, m)
    order = torch.sort(groups, dim=2, stable=True).indices  # (R, G, m): sorted position -> offset
    pos = torch.arange(m, device=score.device).expand_as(order)
    return torch.empty_like(order).scatter_(2, order, pos)


def init_logits(ranks: torch.Tensor, patterns: torch.Tensor, scale: float) -> torch.Tensor:
    """``scale * (sum of the kept weights' ranks)`` per pattern, fp32 ``[P, R, G]`` (pattern-major, see below).

    The sums are exact small integers (a float matmul is exact below 2^24 and every device has one),
    then one multiplication by ``scale > 0`` (monotone), so rounding cannot disturb the unique maximum:
    the pattern keeping the K top-ranked weights, i.e. Wanda's choice.

    Layout: logits are pattern-major ``[P, R, G]`` because on CPU a softmax/max over a tiny last
    dimension (P = 6) is ~7x slower than over the first, where every pattern is one contiguous slice.
    """
    R, G, m = ranks.shape
    sums = patterns.to(ranks.device, torch.float32) @ ranks.reshape(R * G, m).to(torch.float32).t()  # (P, R*G)
    return (sums * float(scale)).reshape(-1, R, G)


def choice(logits: torch.Tensor) -> torch.Tensor:
    """Each group's most probable pattern, int64 ``[R, G]`` (first index on exact ties, like argmax).

    ``amax`` over the patterns, then the lowest p reaching it: P vectorised passes, ~7x faster on CPU
    than ``max(dim=0).indices`` (which does not vectorise across groups).
    """
    top = logits.amax(dim=0)
    idx = torch.zeros(top.shape, dtype=torch.int64, device=logits.device)
    for p in range(logits.shape[0] - 1, 0, -1):  # descending: the lowest matching p is written last
        idx.masked_fill_(logits[p] == top, p)
    idx.masked_fill_(logits[0] == top, 0)
    return idx


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """``softmax`` over each group's patterns (dim 0 of ``[P, R, G]``)."""
    return torch.softmax(logits, dim=0)


def hard_keep(logits: torch.Tensor, patterns: torch.Tensor) -> torch.Tensor:
    """Bool keep mask ``[R, G * m]``: every group's most probable pattern."""
    _, R, G = logits.shape
    return patterns.to(logits.device).index_select(0, choice(logits).reshape(-1)).reshape(R, -1)


def soft_keep(q: torch.Tensor, patterns: torch.Tensor) -> torch.Tensor:
    """Keep probability of every weight, ``sum_p q_p patterns_p``: fp32 ``[R, G * m]`` (``q``: ``[P, R, G]``)."""
    P, R, G = q.shape
    soft = patterns.to(q.device, q.dtype).t() @ q.reshape(P, R * G)  # (m, R*G)
    return soft.t().reshape(R, -1)


class _NmMaskedWeight(torch.autograd.Function):
    """Forward ``W * hard`` exactly; backward d loss / d q_p = sum over the weights p keeps of (grad * W).

    That is the gradient of ``W * ste(hard, soft_keep(q))`` with the straight-through value taken as
    exactly ``hard`` (the soft mask never enters the forward, so it is never built).
    """

    @staticmethod
    def forward(ctx, W, hard, q, patterns):
        ctx.save_for_backward(W, patterns)
        ctx.q_shape = q.shape
        return W * hard

    @staticmethod
    def backward(ctx, grad):
        W, patterns = ctx.saved_tensors
        P, R, G = ctx.q_shape
        g = (grad * W).reshape(R * G, -1)  # d loss / d mask, one row per group
        return None, None, (patterns.to(g.dtype) @ g.t()).reshape(P, R, G), None


def masked_weight(W: torch.Tensor, hard: torch.Tensor, q: torch.Tensor, patterns: torch.Tensor) -> torch.Tensor:
    """Straight-through masked weight ``[R, C]``: value ``W * hard``, gradient to ``q`` (``[P, R, G]``)."""
    return _NmMaskedWeight.apply(W.detach(), hard, q, patterns.to(W.device))
