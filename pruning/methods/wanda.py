"""Wanda (Sun et al., 2023): prune by ``|W| * sqrt(mean ||X_c||^2)``, no weight update.

Lifecycle per block: one dense forward over the calibration inputs with hooks on the seven linears
(:class:`~pruning.methods.scoring.InputNormStat`), then per layer the score and the mask:
unstructured prunes ``int(C * S)`` entries of every row (stable ascending sort), n:m keeps the
``n`` highest of every ``m`` consecutive input columns of every row (prunes the ``m - n`` lowest).  Masks: 1 = kept.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from pruning.methods.base import LINEAR_NAMES, BlockInputs, BlockJob, BlockResult, PruningMethod, register
from pruning.methods.scoring import InputNormStat, accumulate_inputs, mask_from_scores, wanda_scores


@dataclass(frozen=True)
class WandaConfig:
    """Wanda has no options of its own (sparsity and pattern come from the driver)."""


@register("wanda")
class Wanda(PruningMethod):
    needs_targets = False

    def __init__(self, config: WandaConfig = WandaConfig()):
        self.config = config

    def prune_block(self, block: nn.Module, inputs: BlockInputs, targets, job: BlockJob) -> BlockResult:
        stats = InputNormStat()
        accumulate_inputs(block, inputs, job, LINEAR_NAMES, stats.update)
        keep = {}
        for name in LINEAR_NAMES:
            w = block.get_submodule(name).weight
            scores = wanda_scores(w, stats.stat[name])  # (out, in)
            keep[name] = mask_from_scores(scores, job.sparsity[name], job.pattern).cpu()
        return BlockResult(keep=keep)
