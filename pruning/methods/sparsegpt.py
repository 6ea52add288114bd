"""SparseGPT (Frantar & Alistarh, 2023): prune with an approximate second-order (OBS) weight update.

Lifecycle per block: one dense forward over the calibration inputs with hooks on the seven linears
(:meth:`SparseGPTLayer.add_batch` accumulates the Hessian), then per layer :meth:`SparseGPTLayer.prune`,
then :meth:`SparseGPTLayer.free`.  The method returns the keep masks AND the updated weights
(``BlockResult.weights``); the driver copies them in and multiplies the masks in.

The maths, per linear ``W [out, in]`` with inputs ``X [in, tokens]``:

* ``H = 2/n Σ X Xᵀ`` (fp32, running mean over the ``n`` calibration windows); a column with a zero
  diagonal (dead input) gets ``H_cc = 1`` and its weights zeroed;
* damping ``λ = percdamp · mean(diag H)`` (1 %), ``Hinv = cholesky(H⁻¹, upper)``; if a Cholesky
  factorisation fails, the damping is multiplied by 10 and it is retried (recorded as ``damp``);
* columns in blocks of ``blocksize`` (128): unstructured selects, ONCE per block and over ALL rows,
  the lowest ``W² / diag(Hinv)²`` — so per-row sparsity varies; n:m (``n`` KEPT of ``m``) selects the
  ``m - n`` lowest of every ``m`` columns from the already-updated weights when the loop reaches them;
* column by column: zero the pruned weights, ``err = (w − q) / Hinv_ii``, update the rest of the block
  ``W[:, i:] −= err · Hinv[i, i:]``; after the block, ``W[:, i2:] −= Err · Hinv[i1:i2, i2:]``.

One deliberate difference from the reference: it prunes ``score <= sorted[int(k)]`` per block
(``int(numel·S) + 1`` entries and every tie); we prune exactly ``int(numel·S)`` per block (stable
sort), so realised sparsity equals the target.  Masks: 1 = kept.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import torch
from torch import nn

from pruning.methods.base import LINEAR_NAMES, BlockInputs, BlockJob, BlockResult, PruningMethod, register
from pruning.methods.scoring import accumulate_inputs
from besa_common.errors import UserError


@dataclass(frozen=True)
class SparseGPTConfig:
    """``blocksize``: columns per lazy-update block (128).  ``percdamp``: damping as a fraction of
    the mean Hessian diagonal (0.01).  ``max_retries``: ×10 damping increases on Cholesky failure."""

    blocksize: int = 128
    percdamp: float = 0.01
    max_retries: int = 6

    def __post_init__(self) -> None:
        if self.blocksize < 1:
            raise UserError(f"sparsegpt blocksize must be positive, got {self.blocksize}")
        if not self.percdamp > 0:
            raise UserError(f"sparsegpt damping must be positive, got {self.percdamp}")


class SparseGPTLayer:
    """SparseGPT for one linear: ``add_batch`` (Hessian), ``prune`` (masks + OBS update), ``free``."""

    def __init__(self, weight: torch.Tensor):
        self.rows, self.columns = weight.shape
        self.H = torch.zeros((self.columns, self.columns), dtype=torch.float32, device=weight.device)
        self.nsamples = 0

    def add_batch(self, x: torch.Tensor, samples: int = 1) -> None:
        """``x``: ``(tokens, in)`` inputs of ``samples`` calibration windows."""
        x = x.t().float()  # (in, tokens)
        self.H *= self.nsamples / (self.nsamples + samples)
        self.nsamples += samples
        x = math.sqrt(2 / self.nsamples) * x
        self.H += x.matmul(x.t())

    def _hinv(self, H: torch.Tensor, percdamp: float, max_retries: int) -> tuple[torch.Tensor, float]:
        """Upper Cholesky factor of ``(H + λI)⁻¹``, raising λ ×10 on failure; returns (Hinv, percdamp used)."""
        mean_diag = torch.mean(torch.diag(H))
        idx = torch.arange(self.columns, device=H.device)
        for attempt in range(max_retries + 1):
            damp = percdamp * (10**attempt)
            Hd = H.clone()
            Hd[idx, idx] += damp * mean_diag
            try:
                L = torch.linalg.cholesky(Hd)
                Hinv = torch.cholesky_inverse(L)
                Hinv = torch.linalg.cholesky(Hinv, upper=True)
                if torch.isfinite(Hinv).all():
                    return Hinv, damp
            except torch.linalg.LinAlgError:
                pass
            print(f"[sparsegpt] Cholesky failed with damping {damp:g} x mean diag; retrying with {damp * 10:g}", file=sys.stderr)
        raise RuntimeError(f"SparseGPT: Hessian not positive definite even with damping {percdamp * 10**max_retries:g} x mean diag")

    @torch.no_grad()
    def prune(
        self,
        weight: torch.Tensor,
        sparsity: float,
        pattern: tuple[int, int] | None,
        blocksize: int = 128,
        percdamp: float = 0.01,
        max_retries: int = 6,
        fixed_keep: torch.Tensor | None = None,
    ):
        """Return ``(W_new fp32 [out, in], keep bool [out, in], info)`` for ``weight``; ``weight`` is untouched.

        ``fixed_keep`` (bool ``[out, in]``, 1 = kept): skip the selection and run the same OBS update
        with this mask (``--weight-update obs``; ``sparsity``/``pattern`` are then ignored).  Given
        SparseGPT's own mask it reproduces SparseGPT's weights exactly: the selection of a 128-column
        block happens before that block's updates.

        ``info``: ``damp`` (fraction of mean diag finally used) and ``error`` (Σ OBS losses).
        """
        W = weight.detach().clone().float()  # (out, in)
        H = self.H.clone()
        dead = torch.diag(H) == 0
        H[dead, dead] = 1
        W[:, dead] = 0
        Hinv, damp = self._hinv(H, percdamp, max_retries)
        prunen, prunem = (pattern[1] - pattern[0], pattern[1]) if pattern is not None and fixed_keep is None else (0, 0)  # pattern = (kept, m)
        if prunem and self.columns % prunem:
            raise UserError(f"sparsegpt: in-features {self.columns} not divisible by m={prunem}")
        pruned = torch.zeros_like(W, dtype=torch.bool)  # True = pruned (internal)
        losses = torch.zeros(self.rows, dtype=torch.float32, device=W.device)
        for i1 in range(0, self.columns, blocksize):
            i2 = min(i1 + blocksize, self.columns)
            count = i2 - i1
            W1 = W[:, i1:i2].clone()  # (out, count)
            Q1 = torch.zeros_like(W1)
            Err1 = torch.zeros_like(W1)
            Losses1 = torch.zeros_like(W1)
            Hinv1 = Hinv[i1:i2, i1:i2]  # (count, count)
            d1 = torch.diag(Hinv1)
            if fixed_keep is not None:
                mask1 = ~fixed_keep[:, i1:i2].to(W.device)
            elif prunen == 0:
                score = W1**2 / d1.reshape(1, -1) ** 2  # (out, count)
                k = int(score.numel() * sparsity)
                mask1 = torch.zeros(score.numel(), dtype=torch.bool, device=W.device)
                if k:
                    mask1[torch.sort(score.reshape(-1), stable=True)[1][:k]] = True
                mask1 = mask1.reshape(score.shape)
            else:
                mask1 = torch.zeros_like(W1, dtype=torch.bool)
            for i in range(count):
                w = W1[:, i]
                d = Hinv1[i, i]
                if prunen != 0 and i % prunem == 0:
                    score = W1[:, i : i + prunem] ** 2 / d1[i : i + prunem].reshape(1, -1) ** 2  # (out, m)
                    idx = torch.sort(score, dim=1, stable=True)[1][:, :prunen]
                    mask1.scatter_(1, i + idx, True)
                q = w.clone()
                q[mask1[:, i]] = 0
                Q1[:, i] = q
                Losses1[:, i] = (w - q) ** 2 / d**2
                err1 = (w - q) / d
                W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
                Err1[:, i] = err1
            W[:, i1:i2] = Q1
            pruned[:, i1:i2] = mask1
            losses += torch.sum(Losses1, 1) / 2
            W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
        return W, ~pruned, {"damp": damp, "error": float(losses.sum())}

    def free(self) -> None:
        self.H = None


@register("sparsegpt")
class SparseGPT(PruningMethod):
    needs_targets = False
    updates_weights = True

    def __init__(self, config: SparseGPTConfig = SparseGPTConfig()):
        self.config = config

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument("--sparsegpt-blocksize", type=int, default=128, help="sparsegpt: columns per lazy-update block (default 128)")
        parser.add_argument(
            "--sparsegpt-damp",
            type=float,
            default=0.01,
            help="sparsegpt: Hessian damping, fraction of the mean diagonal (default 0.01; x10 on Cholesky failure)",
        )

    @classmethod
    def from_args(cls, args) -> "SparseGPT":
        return cls(SparseGPTConfig(blocksize=args.sparsegpt_blocksize, percdamp=args.sparsegpt_damp))

    def prune_block(self, block: nn.Module, inputs: BlockInputs, targets, job: BlockJob) -> BlockResult:
        layers = {n: SparseGPTLayer(block.get_submodule(n).weight) for n in LINEAR_NAMES}
        accumulate_inputs(block, inputs, job, LINEAR_NAMES, lambda name, x: layers[name].add_batch(x))
        keep, weights, record = {}, {}, {"layers": {}}
        for name in LINEAR_NAMES:
            lin = block.get_submodule(name)
            W, k, info = layers[name].prune(lin.weight, job.sparsity[name], job.pattern, self.config.blocksize, self.config.percdamp, self.config.max_retries)
            layers[name].free()
            keep[name] = k.cpu()
            weights[name] = W.to(lin.weight.dtype).cpu()
            record["layers"][name] = {"damp": info["damp"], "obs_error": info["error"]}
        return BlockResult(keep=keep, weights=weights, record=record)
