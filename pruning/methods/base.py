"""The contract between the block driver and a pruning method.

Lifecycle (the driver, ``pruning/driver.py``, owns it; a method never touches the driver):

1. The driver captures the inputs of decoder block 0 (hidden states + every keyword argument the
   block receives) and, for each block ``i`` in order:
2. moves block ``i`` to the compute device and calls ``method.prune_block(block, inputs, targets, job)``;
   ``targets`` are the dense block's outputs on the pruned-propagated inputs (default) or the dense
   model's own trajectory (``--target dense``), computed only when ``method.needs_targets`` (``None``
   in the default mode when ``method.makes_targets``: the method records them in its own dense pass);
3. multiplies the returned keep masks into the weights (``W *= keep``) and, when ``job.wbits`` is
   set, quantizes them (with the method's own quantization parameters if it returned any, else
   round-to-nearest);
4. feeds the pruned block's outputs to block ``i + 1`` and checkpoints the block so an interrupted
   run resumes there with identical masks.

Methods register themselves with :func:`register`; the driver looks them up in :data:`METHODS`
(a dict, not an if/elif chain).  Masks are bool ``[out, in]`` with 1 = kept.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from besa_common.llama import LINEAR_NAMES as LINEAR_NAMES  # the seven linears of a block (re-exported)


@dataclass
class BlockInputs:
    """Calibration inputs of one decoder block.

    ``hidden``: ``(n, T, C)`` hidden states, one row per calibration window (on ``job.device`` or on
    CPU when ``--offload-acts`` is set; move a slice with ``.to(job.device)`` before use).
    ``kwargs``: every keyword argument the block receives (``attention_mask``, ``position_ids``,
    ``position_embeddings`` = rotary (cos, sin), cache flags ...), shared by all windows, batch dim 1,
    already on ``job.device``.
    """

    hidden: torch.Tensor
    kwargs: dict[str, Any]

    def __len__(self) -> int:
        return int(self.hidden.shape[0])

    def run(self, block: nn.Module, i: int, device: torch.device) -> torch.Tensor:
        """Block output for window ``i``: ``(1, T, C)``."""
        out = block(self.hidden[i : i + 1].to(device), **self.kwargs)
        return out[0] if isinstance(out, (tuple, list)) else out


@dataclass(frozen=True)
class BlockJob:
    """What the driver asks of a method for one block."""

    index: int  # block number, 0-based
    prefix: str  # HF module prefix of the block, e.g. "model.layers.3."
    sparsity: dict[str, float]  # local linear name -> target sparsity (fraction pruned) in [0, 1)
    pattern: tuple[int, int] | None  # (n, m): at most n of every m consecutive input columns KEPT; None = unstructured
    device: torch.device
    autocast_dtype: torch.dtype | None  # fp16/bf16 autocast on CUDA, None = fp32
    seed: int
    wbits: int | None = None  # weight-only quantization bits (None = no quantization)
    group_size: int = 128  # quantization group along in-features
    # Called as (local name, X fp32 [tokens, in]) with every hooked linear's input in the method's dense
    # statistics pass (scoring.accumulate_inputs): the weight update collects its XᵀX there instead of
    # running the block again (pruning.weight_update.GramCollector).  None = nobody listens.
    input_observer: Callable[[str, torch.Tensor], None] | None = None


@dataclass
class BlockResult:
    """What a method returns for one block.

    ``record`` (JSON-able): ``record["layers"][local name]`` is merged into that layer's entry of
    ``DIR/allocation.json`` (e.g. ``"expected"``: the sparsity the method believes it set); every
    other key goes to ``allocation["blocks"][str(index)]``.
    ``weights``: methods that UPDATE the kept weights (SparseGPT's OBS update) return the new
    ``[out, in]`` weights here (local name -> CPU tensor); the driver copies them in before masking.
    Masking-only methods leave it empty.
    """

    keep: dict[str, torch.Tensor]  # local linear name -> bool [out, in] on CPU, 1 = kept
    record: dict[str, Any] = field(default_factory=dict)  # JSON-able per-layer info (allocation, expected sparsity)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # extra tensors to save, e.g. "mlp.up_proj.qscale"
    weights: dict[str, torch.Tensor] = field(default_factory=dict)  # updated weights (before masking), if any


class PruningMethod(ABC):
    """A pruning method: one call per block.  Configure it with a frozen dataclass in ``__init__``."""

    name: ClassVar[str] = ""
    needs_targets: ClassVar[bool] = False  # does prune_block use the dense targets?
    # With needs_targets: given ``targets=None`` in the default (pruned) target mode, prune_block
    # records the dense block's outputs on these inputs itself, in the dense pass it makes anyway
    # (BESA's statistics pass), so the driver skips its own target pass: one block forward less.
    makes_targets: ClassVar[bool] = False
    handles_quant: ClassVar[bool] = False  # does it return its own quantization parameters?
    needs_inputs: ClassVar[bool] = True  # False (magnitude): no calibration forward passes; inputs are empty
    # Does prune_block return updated weights (BlockResult.weights)?  The driver records what actually
    # happened in the manifest (``updated_weights``); this flag only tells consumers of masks files
    # written before that key existed that such masks are useless without their weights.
    updates_weights: ClassVar[bool] = False
    # Optional pre-pass (OWL): with needs_prepass the driver first calls
    # ``observe_block(block, inputs, job)`` for every block of the DENSE model in order (dense
    # propagation), then ``plan_sparsity(targets) -> targets`` ({HF module name: sparsity}) once,
    # and prunes with the planned per-layer targets.
    needs_prepass: ClassVar[bool] = False

    @classmethod  # noqa: B027  (an optional hook; the default adds no flags)
    def add_arguments(cls, parser) -> None:
        """Add this method's own flags to ``besa prune`` (an argparse group); default: none."""

    @classmethod
    def from_args(cls, args) -> "PruningMethod":
        """Build the method from parsed CLI flags (the CLI's job; library users call ``__init__``)."""
        return cls()

    @abstractmethod
    def prune_block(self, block: nn.Module, inputs: BlockInputs, targets: torch.Tensor | None, job: BlockJob) -> BlockResult:
        """Return keep masks for the block's linear layers (do not modify the weights here)."""


# name -> factory(**options) -> PruningMethod
METHODS: dict[str, Callable[..., PruningMethod]] = {}


def register(name: str):
    """Class decorator: ``@register("wanda")`` makes the method available as ``--method wanda``."""

    def deco(cls):
        cls.name = name
        METHODS[name] = cls
        return cls

    return deco
