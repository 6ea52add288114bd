"""Magnitude pruning: ``|W|`` only, no calibration statistics.

``scope="row"`` (default) prunes ``int(C * S)`` smallest entries of every output row, the variant
whose SmolLM2 number ``docs/besa.md`` quotes (~390 ppl at 50%); ``scope="layer"`` prunes exactly
``int(out * in * S)`` smallest entries of the whole layer (one threshold per layer, ties broken by
position so the count is exact).  n:m (``pattern``) keeps the ``n`` largest of every ``m``
consecutive input columns (prunes the ``m - n`` smallest).  Masks: 1 = kept.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from pruning.methods.base import LINEAR_NAMES, BlockInputs, BlockJob, BlockResult, PruningMethod, register
from pruning.methods.scoring import mask_from_scores
from besa_common.errors import UserError

SCOPES = ("row", "layer")


@dataclass(frozen=True)
class MagnitudeConfig:
    scope: str = "row"  # "row" | "layer": where the threshold is taken

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise UserError(f"magnitude scope must be one of {', '.join(SCOPES)}, got {self.scope!r}")


@register("magnitude")
class Magnitude(PruningMethod):
    needs_targets = False
    needs_inputs = False  # |W| only: the driver skips capture and propagation

    def __init__(self, config: MagnitudeConfig = MagnitudeConfig()):
        self.config = config

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument("--magnitude-scope", choices=SCOPES, default="row", help="magnitude: threshold per output row (default) or per layer")

    @classmethod
    def from_args(cls, args) -> "Magnitude":
        return cls(MagnitudeConfig(scope=args.magnitude_scope))

    def prune_block(self, block: nn.Module, inputs: BlockInputs, targets, job: BlockJob) -> BlockResult:
        keep = {}
        for name in LINEAR_NAMES:
            scores = block.get_submodule(name).weight.detach().float().abs()  # (out, in)
            keep[name] = mask_from_scores(scores, job.sparsity[name], job.pattern, self.config.scope).cpu()
        return BlockResult(keep=keep)
