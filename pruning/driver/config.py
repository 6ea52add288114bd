"""Block driver, stage 0: the run's configuration, per-layer targets, the checks made before any
block is touched (see :mod:`pruning.driver` for the lifecycle; the device and dtype come from
:mod:`pruning.device`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import torch

from besa_common.errors import UserError
from besa_common.llama import LINEAR_NAMES
from pruning.device import AUTOCAST_DTYPES, resolve_device
from pruning.models import linear_layers
from pruning.weight_update import WeightUpdateConfig

TARGET_MODES = ("pruned", "dense")
# Manifest / masks-meta ``pattern`` "N:M" = at most N KEPT of every M consecutive input weights.
# Manifests without this key (version 1) meant N PRUNED of M.
PATTERN_CONVENTION = "n_kept_of_m"


@dataclass(frozen=True)
class DriverConfig:
    """How to run the block loop.

    ``sparsity``: target fraction PRUNED per linear, in [0, 1); ``layer_sparsity`` overrides it per
    HF module name (``model.layers.3.mlp.up_proj``), e.g. OWL's allocation.  ``pattern``: (n, m) =
    at most n of every m consecutive input columns KEPT (N:M convention; sparsity
    1 - n/m), or None (unstructured).  ``dtype``: compute
    dtype; float16/bfloat16 = autocast (weights and buffers stay fp32).  ``target``: ``pruned``
    (dense block on the pruned-propagated inputs, the reference default) or ``dense`` (the dense
    model's own trajectory; a third buffer).
    """

    sparsity: float
    pattern: tuple[int, int] | None = None
    layer_sparsity: Mapping[str, float] = field(default_factory=dict)
    device: str = "auto"
    dtype: str = "float32"
    target: str = "pruned"
    offload_acts: bool = False
    wbits: int | None = None
    group_size: int = 128
    seed: int = 0
    progress: bool = True
    weight_update: WeightUpdateConfig = WeightUpdateConfig()

    def __post_init__(self) -> None:
        if not 0.0 <= self.sparsity < 1.0:
            raise UserError(f"sparsity must be in [0, 1), got {self.sparsity}")
        for name, s in self.layer_sparsity.items():
            if not 0.0 <= float(s) < 1.0:
                raise UserError(f"layer sparsity for {name} must be in [0, 1), got {s}")
        if self.pattern is not None:
            n, m = self.pattern
            if not (0 < n < m):
                raise UserError(f"pattern n:m needs 0 < n < m, got {n}:{m}")
        if self.target not in TARGET_MODES:
            raise UserError(f"target must be one of {', '.join(TARGET_MODES)}, got {self.target!r}")
        if self.dtype not in AUTOCAST_DTYPES:
            raise UserError(f"dtype must be one of {', '.join(AUTOCAST_DTYPES)}, got {self.dtype!r}")


def layer_targets(config: DriverConfig, n_blocks: int) -> dict[str, float]:
    """HF module name -> target sparsity for every prunable linear (``layer_sparsity`` or uniform)."""
    return {f"model.layers.{i}.{n}": float(config.layer_sparsity.get(f"model.layers.{i}.{n}", config.sparsity)) for i in range(n_blocks) for n in LINEAR_NAMES}


def check_group_size(model, group_size: int) -> None:
    """Quantization groups must tile every linear's in-features exactly."""
    if group_size < 1:
        raise UserError(f"--group-size must be positive, got {group_size}")
    for name, lin in linear_layers(model).items():
        if lin.in_features % group_size:
            raise UserError(f"--group-size {group_size} does not divide the in-features ({lin.in_features}) of {name}")


def validate_run(model, config: DriverConfig, calib: torch.Tensor, n_blocks: int) -> tuple[torch.device, torch.dtype | None]:
    """Everything checkable before the first block: device, dtype, quantization, calibration shape,
    ``layer_sparsity`` names.  Returns ``(device, autocast dtype or None)``."""
    device = resolve_device(config.device)
    autocast_dtype = AUTOCAST_DTYPES[config.dtype]
    if autocast_dtype is torch.float16 and device.type != "cuda":
        raise UserError("--dtype float16 needs CUDA (use float32 or bfloat16 on CPU)")
    if config.wbits is not None:
        if not 1 < config.wbits <= 16:
            raise UserError(f"--wbits must be in 2..16, got {config.wbits}")
        check_group_size(model, config.group_size)
    if calib.ndim != 2 or calib.shape[0] < 1:
        raise UserError(f"calibration must be (nsamples, seqlen), got {tuple(calib.shape)}")
    names = {f"model.layers.{i}.{ln}" for i in range(n_blocks) for ln in LINEAR_NAMES}
    unknown = [n for n in config.layer_sparsity if n not in names]
    if unknown:
        raise UserError(f"layer sparsity names an unknown layer {unknown[0]!r}")
    return device, autocast_dtype
