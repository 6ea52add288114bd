"""OWL (Yin et al., 2024): outlier-weighted layerwise sparsity, then Wanda with per-block targets.

Lifecycle: a pre-pass over the DENSE model (the driver's ``observe_block`` hook, dense
propagation) computes each block's outlier ratio ``D_i`` = share of the Wanda scores
``|W| sqrt(stat)`` of its seven linears that exceed ``M ×`` their mean (``M = 5``).  Then, as the
reference does, the ratios are min-max scaled to ``[0, 2λ]`` (``λ = 0.08``), centred on the target
density ``1 − S`` and turned into per-block sparsities ``S_i = 1 − density_i``: blocks with more
outliers are pruned less, the mean stays ``S``, and ``S_i ∈ [S − λ', S + λ']`` with ``λ' ≤ 2λ``.
The pruning pass is Wanda (per-row ``int(C·S_i)``) with sequential pruned propagation.
Masks: 1 = kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pruning.methods.base import LINEAR_NAMES, BlockInputs, BlockJob, BlockResult, register
from pruning.methods.scoring import InputNormStat, accumulate_inputs, wanda_scores
from pruning.methods.wanda import Wanda
from besa_common.errors import UserError


@dataclass(frozen=True)
class OWLConfig:
    """``lam``: half-width λ of the sparsity spread (0.08).  ``m``: outlier threshold M (× mean score, 5)."""

    lam: float = 0.08
    m: float = 5.0

    def __post_init__(self) -> None:
        if not 0 <= self.lam < 0.5:
            raise UserError(f"owl lambda must be in [0, 0.5), got {self.lam}")
        if not self.m > 0:
            raise UserError(f"owl M must be positive, got {self.m}")


def outlier_ratio(scores: list[torch.Tensor], m: float) -> float:
    """Share of all entries of ``scores`` (concatenated) above ``m`` × their mean."""
    flat = torch.cat([s.reshape(-1).float().cpu() for s in scores])
    return float((flat > m * flat.mean()).float().mean())


def owl_sparsities(ratios: list[float], sparsity: float, lam: float) -> list[float]:
    """Per-block sparsities from outlier ratios (the reference's normalisation)."""
    r = np.asarray(ratios, dtype=np.float64)
    span = r.max() - r.min()
    if span == 0:
        return [float(sparsity)] * len(r)
    density = (r - r.min()) * (1.0 / span * lam * 2)
    density = density - density.mean() + (1.0 - sparsity)
    return [float(1.0 - d) for d in density]


@register("owl")
class OWL(Wanda):
    needs_prepass = True

    def __init__(self, config: OWLConfig = OWLConfig()):
        self.config = config
        self.ratios: dict[int, float] = {}

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument("--owl-lambda", type=float, default=0.08, help="owl: sparsity spread λ across blocks (default 0.08)")
        parser.add_argument("--owl-m", type=float, default=5.0, help="owl: outlier threshold M, × the mean Wanda score (default 5)")

    @classmethod
    def from_args(cls, args) -> "OWL":
        return cls(OWLConfig(lam=args.owl_lambda, m=args.owl_m))

    def observe_block(self, block: nn.Module, inputs: BlockInputs, job: BlockJob) -> None:
        if job.pattern is not None:
            raise UserError("owl allocates unstructured sparsity per block; drop --pattern")
        stats = InputNormStat()
        accumulate_inputs(block, inputs, job, LINEAR_NAMES, stats.update)
        scores = [wanda_scores(block.get_submodule(n).weight, stats.stat[n]) for n in LINEAR_NAMES]
        self.ratios[job.index] = outlier_ratio(scores, self.config.m)

    def plan_sparsity(self, targets: dict[str, float]) -> dict[str, float]:
        blocks = sorted(self.ratios)
        base = float(np.mean(list(targets.values())))  # the uniform target S
        per_block = owl_sparsities([self.ratios[i] for i in blocks], base, self.config.lam)
        self.block_targets = dict(zip(blocks, per_block))
        return {name: self.block_targets[int(name.split(".")[2])] for name in targets}

    def prune_block(self, block: nn.Module, inputs: BlockInputs, targets, job: BlockJob) -> BlockResult:
        res = super().prune_block(block, inputs, targets, job)
        res.record = {"outlier_ratio": self.ratios.get(job.index), "block_target": self.block_targets.get(job.index)}
        return res
