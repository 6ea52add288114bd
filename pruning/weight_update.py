"""Weight update after mask selection (``besa prune --weight-update {none,obs,admm}``).

Any method chooses the masks; then, with the masks FIXED, each linear's kept weights are moved to
reduce its reconstruction error on the calibration inputs.  Per linear ``W0 [out, in]`` (the dense
weights) with inputs ``X [tokens, in]`` (the dense block's inputs to that linear on the
pruned-propagated block inputs, the same ``X`` SparseGPT uses), the objective is

    min_W  tr((W - W0) H_λ (W - W0)ᵀ)   s.t.  W[r, c] = 0 where keep[r, c] = 0,
    H = XᵀX,  H_λ = H + λ·diag(H)   (λ = ``damp``, a ridge towards W0 that keeps H_λ positive definite).

The rows are independent: row ``r`` with kept set ``S`` has the optimum ``w_S = (H_λ)_SS⁻¹ (H_λ w0)_S``.

* ``obs``: SparseGPT's sequential OBS update with the given mask (``SparseGPTLayer.prune`` with
  ``fixed_keep``; its own damping ``damp · mean(diag H)``).  One left-to-right pass: a pruned
  column's error is compensated only by the columns after it, so it is not the optimum above
  (it is when every row's pruned columns come first).  Given SparseGPT's own mask it reproduces
  SparseGPT's weights exactly.
* ``admm``: the ADMM weight update of Boža ("Fast and Effective Weight Update for Pruned Large
  Language Models", TMLR 2024), implemented from the paper.  In coordinates scaled by
  ``d = sqrt(diag H)`` (so ``H_λ`` has diagonal ``1 + λ``): ``W ← (W0 H_λ + ρ(Z − U)) (H_λ + ρI)⁻¹``,
  ``Z ← keep ⊙ (W + U)``, ``U ← U + W − Z``, ``iters`` times; the result is ``Z`` (exactly on the
  mask).  The paper raises ρ because it also grows the mask; with the mask fixed the problem is a
  convex QP and a CONSTANT ρ converged fastest in our measurement (relative objective gap to the
  optimum after 20 / 30 / 60 iterations: 2e-4 / 5e-6 / 5e-10 at ρ = 0.3, vs 1e-2 / 2e-3 / 2e-5 for
  ρ rising 0.01 → 10; random correlated 192 × 576 layers with outlier features), so ρ is constant
  (one ``[out, in] × [in, in]`` matmul per iteration after one Cholesky inverse) and ``rho_end``
  selects a geometric schedule.  On SmolLM2's real layers (block 1, Wanda masks, 32 × 256
  calibration) the output error above the optimum is, after 6 / 8 / 10 iterations, 2.9–5.7 % /
  1.2–2.6 % / 0.6–1.4 % at ρ = 0.3, 1.1–4.1 % / 0.4–2.1 % / 0.1–1.4 % at ρ = 0.5, 0.9–5.6 % /
  0.3–3.5 % / 0.2–2.5 % at ρ = 1 (20 iterations at ρ = 0.3: 0.02–0.3 %); OBS's is 26–57 %.  Default:
  8 iterations at ρ = 0.5 — within ~2 % of the optimum in under half the CPU time of 20 (0.36 vs
  0.76 s on that down projection).
  ``exact`` then replaces ``Z`` by the exact per-row solve above (batched Cholesky on each row's
  kept set: the optimum, but 20× the CPU time of the default 8 iterations on SmolLM2's 1536-wide down projection: 7.1 vs 0.36 s).
* ``admm`` with ``reselect = N`` (``--admm-reselect N``, off by default): before the fixed-mask
  iterations, N ADMM iterations in which ``Z`` keeps, in every row (with ``--pattern n:m``: every
  group of m), the SAME NUMBER of weights as the method's mask but chooses WHICH by ``|W + U|`` in
  the scaled coordinates (Boža's projection, here at the method's allocation instead of a uniform
  one).  Every row's (group's) sparsity, hence the allocation and the exact budget, is unchanged;
  the masks are not: the run's masks are the reselected ones.  Why: BESA learns how many weights
  each row keeps but takes them in Wanda's order, which ignores the update that follows; on
  SmolLM2's down projection (block 1, Wanda's row counts) 10 reselecting iterations change 9 % of
  the mask and cut the optimum's output error to 0.72× (0.65–0.81× over the 7 linears).
* ``none``: nothing (the method's own weights stay; today's results).

Runs inside the block driver (``pruning.driver``) after ``method.prune_block``: the updated block
produces the next block's inputs, and the updated weights go to ``DIR/weights.safetensors``.
``H`` comes from the method's own dense statistics pass when it makes one (Wanda, BESA, SparseGPT,
OWL: a ``GramCollector`` rides along as ``BlockJob.input_observer``), else from a pass of its own;
both give the same bits.
All arithmetic is fp32 and deterministic (same inputs ⇒ same bits), so resume is bit-identical.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from besa_common.errors import UserError
from pruning.methods.scoring import accumulate_inputs
from pruning.methods.sparsegpt import SparseGPTLayer

MODES = ("none", "obs", "admm")


@dataclass(frozen=True)
class WeightUpdateConfig:
    """``mode``: none | obs | admm.  ``damp``: λ (admm: λ·diag(H); obs: λ·mean(diag H), SparseGPT's).
    ``iters``: ADMM iterations.  ``rho``: ADMM penalty in scaled coordinates (``diag H_λ = 1 + λ``);
    ``rho_end``: None = constant ρ, else ρ rises geometrically from ``rho`` to ``rho_end``.
    ``exact``: finish ADMM with the exact per-row solve (the optimum; costly on wide layers).
    ``reselect``: ADMM iterations that re-choose which weights each row (n:m group) keeps, before
    the ``iters`` fixed-mask ones; 0 = the method's masks stay."""

    mode: str = "none"
    damp: float = 0.01
    iters: int = 8
    rho: float = 0.5
    rho_end: float | None = None
    exact: bool = False
    reselect: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UserError(f"--weight-update must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not self.damp > 0:
            raise UserError(f"--update-damp must be positive, got {self.damp}")
        if self.iters < 1:
            raise UserError(f"--admm-iters must be at least 1, got {self.iters}")
        if self.reselect < 0 or (self.reselect and self.mode != "admm"):
            raise UserError(f"--admm-reselect needs --weight-update admm and a count >= 0, got {self.reselect} with {self.mode}")
        if not self.rho > 0 or (self.rho_end is not None and not self.rho_end >= self.rho):
            raise UserError(f"ADMM needs 0 < rho <= rho_end, got {self.rho}, {self.rho_end}")


class GramCollector:
    """Per-linear ``H = XᵀX`` (fp32 ``[in, in]``, summed over calibration windows) collected from a
    pass that already runs: the driver sets one as ``BlockJob.input_observer`` and
    ``pruning.methods.scoring.accumulate_inputs`` calls it with every hooked linear's input
    ``X [tokens, in]``.  Consecutive calls with the SAME input tensor (q/k/v read one activation,
    gate/up another) compute ``XᵀX`` once.  ``windows[name]`` counts the calls: the grams are used
    only when every updated layer was seen exactly once per window (one pass of the dense block)."""

    def __init__(self) -> None:
        self.grams: dict[str, torch.Tensor] = {}
        self.windows: dict[str, int] = {}
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None  # (input, its XᵀX); holding it pins its storage
        self.closed = False  # after take(): later passes (not the method's statistics pass) are ignored

    def __call__(self, name: str, x: torch.Tensor) -> None:
        if self.closed:
            return
        last = self._last
        same = last is not None and _same_view(last[0], x)
        g = last[1] if same else x.t() @ x
        if not same:
            self._last = (x, g)
        acc = self.grams.get(name)
        if acc is None:
            self.grams[name] = g.clone()
        else:
            acc += g
        self.windows[name] = self.windows.get(name, 0) + 1

    def covers(self, names, windows: int) -> bool:
        return all(self.windows.get(n) == windows for n in names)

    def take(self) -> dict[str, torch.Tensor]:
        grams, self.grams, self.windows, self._last, self.closed = self.grams, {}, {}, None, True
        return grams


def _same_view(a: torch.Tensor, b: torch.Tensor) -> bool:
    """``b`` views exactly ``a``'s elements (same storage address, shape, strides, dtype, device);
    ``a`` is still referenced, so its memory cannot have been reused by another tensor."""
    return a.data_ptr() == b.data_ptr() and a.shape == b.shape and a.stride() == b.stride() and a.dtype == b.dtype and a.device == b.device


def update_errors(W: torch.Tensor, W0: torch.Tensor, keep: torch.Tensor, H: torch.Tensor) -> tuple[float, float]:
    """``(before, after)`` relative output errors ``reconstruction_error`` of ``W0 ⊙ keep`` and ``W``
    with three fp32 matmuls (the sums in fp64): ``P = W0 ⊙ ¬keep``, ``K = W0 ⊙ keep``,
    ``W0 H = P H + K H``, ``(W − W0) H = (W − K) H − P H``."""
    P = W0 * ~keep
    K = W0 - P
    PH, KH = P @ H, K @ H
    den = float(((PH + KH) * W0).sum(dtype=torch.float64))
    before = float((PH * P).sum(dtype=torch.float64))
    D = W - K
    after = float((((D @ H) - PH) * (D - P)).sum(dtype=torch.float64))
    return (before / den, after / den) if den > 0 else (before, after)


def reconstruction_error(W: torch.Tensor, W0: torch.Tensor, H: torch.Tensor) -> float:
    """``tr((W − W0) H (W − W0)ᵀ) / tr(W0 H W0ᵀ)``: relative output error ‖X(W − W0)ᵀ‖² / ‖X W0ᵀ‖²."""
    D = (W - W0).double()
    H = H.double()
    num = torch.einsum("ri,ij,rj->", D, H, D)
    den = torch.einsum("ri,ij,rj->", W0.double(), H, W0.double())
    return float(num / den) if den > 0 else float(num)


def _damped(H: torch.Tensor, damp: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(H_λ scaled to unit-ish diagonal, scale d): ``Hs = D⁻¹ (H + λ diag H) D⁻¹``, ``D = diag(d)``.

    Dead inputs (zero diagonal) get d = 1 and H_cc = 1: their weights do not affect the output, the
    ridge keeps them at W0 (zeroed if pruned)."""
    diag = torch.diag(H).clone()
    dead = diag <= 0
    d = torch.where(dead, torch.ones_like(diag), diag.sqrt())
    Hs = H / d[:, None] / d[None, :]
    idx = torch.arange(H.shape[0], device=H.device)
    Hs[idx, idx] = torch.where(dead, torch.ones_like(diag), Hs[idx, idx]) * (1.0 + damp)
    return Hs, d


def exact_solve(W0: torch.Tensor, H: torch.Tensor, keep: torch.Tensor, damp: float, chunk_elems: int = 1 << 24) -> torch.Tensor:
    """The optimum of the objective for every row: ``w_S = (H_λ)_SS⁻¹ (H_λ w0)_S``, zeros elsewhere.

    Rows are solved in batches: each row's kept indices padded to the widest row (padding = identity
    rows/columns), one batched Cholesky per chunk of rows (at most ``chunk_elems`` matrix entries)."""
    Hs, d = _damped(H.float(), damp)
    W0s = W0.float() * d[None, :]
    B = W0s @ Hs  # (out, in): H_λ w0 per row (Hs symmetric)
    rows, cols = W0.shape
    counts = keep.sum(1)
    kmax = int(counts.max()) if rows else 0
    out = torch.zeros_like(W0s)
    if kmax == 0:
        return out
    # kept indices first (stable: ascending column order), padding after
    order = torch.sort((~keep).to(torch.int8), dim=1, stable=True)[1][:, :kmax]  # (out, kmax)
    valid = torch.arange(kmax, device=W0.device)[None, :] < counts[:, None]  # (out, kmax)
    step = max(1, chunk_elems // (kmax * kmax))
    eye = torch.eye(kmax, device=W0.device, dtype=Hs.dtype)
    for r0 in range(0, rows, step):
        idx, v = order[r0 : r0 + step], valid[r0 : r0 + step]
        A = Hs[idx[:, :, None], idx[:, None, :]]  # (c, kmax, kmax)
        vv = v[:, :, None] & v[:, None, :]
        A = torch.where(vv, A, eye.expand_as(A))
        b = torch.where(v, B[r0 : r0 + step].gather(1, idx), torch.zeros((), dtype=B.dtype, device=B.device))
        L = torch.linalg.cholesky(A)
        x = torch.cholesky_solve(b[:, :, None], L)[:, :, 0]
        out[r0 : r0 + step].scatter_(1, idx, torch.where(v, x, torch.zeros((), dtype=x.dtype, device=x.device)))
    return out / d[None, :]


def admm_update(W0: torch.Tensor, H: torch.Tensor, keep: torch.Tensor, cfg: WeightUpdateConfig) -> tuple[torch.Tensor, dict]:
    """ADMM with the fixed mask ``keep`` (then, with ``cfg.exact``, the exact solve).
    Returns ``(W fp32 [out, in], info)``.

    Constant ρ (the default): ``M = (H_λ + ρI)⁻¹`` once, then ONE matmul per iteration:
    ``W = (W0 H_λ + ρ(Z − U)) M = W0 + ρ (Z − U − W0) M`` (as ``H_λ M = I − ρM``).  A ρ schedule needs
    ``eigh(H_λ)`` and two matmuls per iteration."""
    Hs, d = _damped(H.float(), cfg.damp)
    W0s = W0.float() * d[None, :]
    keepf = keep.to(W0s.dtype)
    Z = W0s * keepf
    U = torch.zeros_like(W0s)
    rho = cfg.rho
    if cfg.rho_end is None:
        eye = torch.eye(Hs.shape[0], dtype=Hs.dtype, device=Hs.device)
        M = torch.cholesky_inverse(torch.linalg.cholesky(Hs + rho * eye))
        M *= rho
        for _ in range(cfg.iters):
            W = W0s + (Z - U - W0s) @ M
            Z = (W + U) * keepf
            U += W - Z
    else:
        evals, Q = torch.linalg.eigh(Hs)  # Hs = Q diag(evals) Qᵀ
        B = W0s @ Hs
        ratio = (cfg.rho_end / cfg.rho) ** (1.0 / max(1, cfg.iters - 1))
        for t in range(cfg.iters):
            if t:
                U *= 1.0 / ratio  # scaled dual U = y / ρ follows ρ
                rho *= ratio
            W = (((B + rho * (Z - U)) @ Q) / (evals + rho)[None, :]) @ Q.T
            Z = (W + U) * keepf
            U += W - Z
    info = {"rho_end": rho, "primal_residual": float((W - Z).norm() / max(float(Z.norm()), 1e-30)), "exact": bool(cfg.exact)}
    if cfg.exact:
        return exact_solve(W0, H, keep, cfg.damp), info
    return Z / d[None, :], info


def _top_per_group(V: torch.Tensor, counts: torch.Tensor, group: int) -> torch.Tensor:
    """bool mask keeping, in every consecutive ``group`` of a row, its ``counts`` largest ``|V|``
    (ties: the lower column, a stable sort).  ``counts``: ``[out, in // group]``."""
    rows, cols = V.shape
    A = V.abs().reshape(rows, cols // group, group)
    order = torch.sort(A, dim=2, descending=True, stable=True)[1]
    ranks = torch.empty_like(order)
    ranks.scatter_(2, order, torch.arange(group, device=V.device).expand_as(order))
    return (ranks < counts[:, :, None]).reshape(rows, cols)


def reselect_mask(W0: torch.Tensor, H: torch.Tensor, keep: torch.Tensor, cfg: WeightUpdateConfig, group: int | None = None) -> torch.Tensor:
    """``cfg.reselect`` ADMM iterations (constant ρ) whose projection keeps, per row (per ``group``
    consecutive columns when given: n:m), as many weights as ``keep`` does, chosen by ``|W + U|``
    in the scaled coordinates.  Returns the new bool mask (same counts per row / group)."""
    Hs, d = _damped(H.float(), cfg.damp)
    W0s = W0.float() * d[None, :]
    g = group or W0s.shape[1]
    counts = keep.reshape(keep.shape[0], -1, g).sum(2)
    eye = torch.eye(Hs.shape[0], dtype=Hs.dtype, device=Hs.device)
    M = torch.cholesky_inverse(torch.linalg.cholesky(Hs + cfg.rho * eye)) * cfg.rho
    k = keep.clone()
    Z, U = W0s * k, torch.zeros_like(W0s)
    for _ in range(cfg.reselect):
        W = W0s + (Z - U - W0s) @ M
        V = W + U
        k = _top_per_group(V, counts, g)
        Z = V * k
        U += W - Z
    return k


def obs_update(W0: torch.Tensor, H: torch.Tensor, keep: torch.Tensor, cfg: WeightUpdateConfig) -> tuple[torch.Tensor, dict]:
    """SparseGPT's OBS update with the fixed mask (its code, not a copy: ``SparseGPTLayer.prune``).

    ``H`` here is ``XᵀX``; SparseGPT's Hessian is ``2/n XᵀX``, a scale its relative damping ignores."""
    layer = SparseGPTLayer(W0)
    layer.H = H.float().clone()
    W, k, info = layer.prune(W0, 0.0, None, percdamp=cfg.damp, fixed_keep=keep)
    layer.free()
    return W, {"damp": info["damp"]}


# mode -> update(W0, H, keep, cfg) -> (W, info)
UPDATES: dict[str, Callable[..., tuple[torch.Tensor, dict]]] = {"obs": obs_update, "admm": admm_update}


@torch.no_grad()
def update_block(
    block: nn.Module, inputs, job, keep: dict[str, torch.Tensor], cfg: WeightUpdateConfig
) -> tuple[dict[str, torch.Tensor], dict, dict[str, torch.Tensor]]:
    """Updated weights (local name -> fp32 CPU ``[out, in]``, masked) for every linear in ``keep``, a
    record ``{name: {"error_before", "error_after", ...}}`` (relative output errors, before = the
    method's mask and weights) and the masks (bool CPU; ``keep`` itself unless ``cfg.reselect``).

    ``block`` still holds the DENSE weights: every linear's ``H = XᵀX`` comes from the method's own
    dense pass (``job.input_observer``, a ``GramCollector``) when that pass saw every layer once per
    window, else from one pass here (the targets ``X W0ᵀ`` of all layers come from the dense block,
    as in SparseGPT)."""
    names = tuple(keep)
    collector = job.input_observer
    if isinstance(collector, GramCollector) and collector.covers(names, len(inputs)):
        grams = collector.take()
    else:
        grams = block_grams(block, inputs, job, names)
    weights, record, keeps = {}, {}, {}
    for name in names:
        lin = block.get_submodule(name)
        W0 = lin.weight.detach().float()
        k = keep[name].to(W0.device)
        H = grams.pop(name)
        info0 = {}
        if cfg.reselect:  # error_before: the method's own mask (three more matmuls, only here)
            k0, k = k, reselect_mask(W0, H, k, cfg, job.pattern[1] if job.pattern else None)
            info0 = {"reselected": float((k != k0).float().mean()), "error_before": update_errors(W0 * k0, W0, k0, H)[0]}
        W, info = UPDATES[cfg.mode](W0, H, k, cfg)
        W = W * k  # exactly zero where pruned
        before, after = update_errors(W, W0, k, H)
        before = info0.pop("error_before", before)
        record[name] = {"error_before": before, "error_after": after, **info0, **info}
        keeps[name] = k.cpu()
        if not math.isfinite(record[name]["error_after"]):
            raise RuntimeError(f"weight update {cfg.mode} diverged on {job.prefix}{name}")
        weights[name] = W.cpu()
    return weights, record, keeps


def block_grams(block: nn.Module, inputs, job, names: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """``H = XᵀX`` of every linear in ``names`` from one pass of the (dense) block over ``inputs``."""
    collector = GramCollector()
    accumulate_inputs(block, inputs, dataclasses.replace(job, input_observer=None), names, collector)
    return collector.take()
