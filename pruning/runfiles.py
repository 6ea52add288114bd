"""Rebuild a pruned model from a run directory: masks, then updated weights, then quantization.

Every consumer of ``besa prune``'s output (``besa eval`` incl. zero-shot, ``besa export``, and
``besa run`` through them) goes through :func:`open_run` + :func:`apply_run`, so they all see the
model the driver ended with:

1. ``masks.safetensors``: ``W *= keep`` on the original weights (1 = kept);
2. ``weights.safetensors`` (only when the run changed weights: SparseGPT, ``--weight-update``):
   the kept values of the changed linears replace theirs (``besa_common.weights``);
3. ``quant.safetensors`` (only with ``--wbits``): fake-quantization with the saved scale/zero.

:func:`open_run` checks everything that does not need the model (files present, digests, counts)
BEFORE the slow model load.  Masks from a run that changed weights (the manifest's
``updated_weights``; for files written before that key existed, the method's
``updates_weights`` class attribute) without their weights file are refused in one line: applying
such masks to the original weights gives a different, worse model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import pruning.methods  # noqa: F401  (fills the registry read by updates_weights)
from besa_common.errors import UserError
from besa_common.masks import read_masks
from besa_common.weights import FILENAME, check_weights, read_weights, scatter_kept
from pruning import models
from pruning.methods.base import METHODS
from pruning.quant import apply_quant, load_quant


@dataclass(frozen=True)
class RunFiles:
    """A validated run directory: ``keep`` (name -> bool ``[out, in]``), the masks manifest,
    ``values`` (name -> float32 kept values, empty when no weights changed), the quant file to apply."""

    masks: Path
    keep: dict[str, np.ndarray]
    manifest: dict[str, Any]
    weights: Path | None
    values: dict[str, np.ndarray]
    quant: Path | None


def masks_file(path: str | Path) -> Path:
    """``DIR`` or ``DIR/masks.safetensors`` -> the masks file path (UserError if it does not exist)."""
    p = Path(path)
    if p.is_dir():
        p = p / "masks.safetensors"
    if not p.is_file():
        raise UserError(f"masks file not found: {p}")
    return p


def updates_weights(manifest: dict[str, Any]) -> bool:
    """Did the run that wrote these masks change the kept weights?"""
    flag = manifest.get("updated_weights")
    if flag is not None:
        return bool(flag)
    # Masks written before the weights file existed: the method decides.
    return bool(getattr(METHODS.get(str(manifest.get("method"))), "updates_weights", False))


def open_run(masks: str | Path, quant: bool | str | Path = True) -> RunFiles:
    """Read and check a run's files.  ``quant``: True = the ``quant.safetensors`` beside the masks
    (required when the manifest says the run was quantized), False = none, a path = that file."""
    path = masks_file(masks)
    keep, manifest = read_masks(path)
    weights, values = None, {}
    if updates_weights(manifest):
        weights = path.with_name(FILENAME)
        if not weights.is_file():
            raise UserError(
                f"{path} comes from {manifest.get('method')!r}, which changed the kept weights, but {weights} is missing; "
                "rerun besa prune (applying these masks to the original weights would give a different model)"
            )
        values, _ = read_weights(weights, masks_path=path)
        check_weights(values, keep, weights)
    qpath = None
    if quant is True:
        qpath = path.with_name("quant.safetensors")
        if not qpath.is_file():
            if manifest.get("wbits") is not None:
                raise UserError(f"{path} comes from a {manifest['wbits']}-bit run but {qpath} is missing (pass --no-quant to evaluate it unquantized)")
            qpath = None
    elif quant:
        qpath = Path(quant)
        if not qpath.is_file():
            raise UserError(f"no quantization file at {qpath}")
    return RunFiles(path, keep, manifest, weights, values, qpath)


@torch.no_grad()
def apply_run(model, run: RunFiles) -> dict[str, Any]:
    """Masks, updated weights, quantization onto ``model`` (fp32, in place).  Returns
    ``{"sparsity": realised over the masked layers, "method", "weights": path | None, "quant": {...} | None}``."""
    models.apply_masks(model, run.keep)
    for name, vals in run.values.items():
        lin = model.get_submodule(name)
        w = torch.from_numpy(scatter_kept(vals, run.keep[name]))
        lin.weight.data.copy_(w.to(lin.weight.device, lin.weight.dtype))
    info: dict[str, Any] = {"weights": None if run.weights is None else str(run.weights), "quant": None}
    if run.quant is not None:
        qparams, qmeta = load_quant(run.quant)
        apply_quant(model, qparams, qmeta)
        models.apply_masks(model, run.keep)  # quantization keeps zeros at zero; re-masking makes it a guarantee
        info["quant"] = {"path": str(run.quant), "wbits": int(qmeta["wbits"]), "group_size": int(qmeta["group_size"])}
    total = sum(k.size for k in run.keep.values())
    kept = sum(int(k.sum()) for k in run.keep.values())
    info["sparsity"] = 1.0 - kept / total
    info["method"] = run.manifest.get("method")
    return info


def load_pruned(model_spec: str, masks: str | Path | None, quant: bool | str | Path | None = True):
    """Load ``model_spec`` (fp32) and rebuild the pruned model of the run whose masks are ``masks``
    (:func:`open_run` first, so a bad run directory fails before the slow model load; then
    :func:`apply_run`).  ``masks`` None = the dense model.  ``quant`` as in :func:`open_run`
    (None = False).  Returns ``(model, tokenizer, info)``; ``info`` has ``sparsity`` (realised over
    the masked layers; 0.0 without masks), ``method``, ``weights`` and ``quant``."""
    run = None if masks is None else open_run(masks, quant=quant if quant else False)
    model, tokenizer = models.load_model(model_spec, dtype=torch.float32)
    info: dict[str, Any] = {"sparsity": 0.0, "method": None, "weights": None, "quant": None}
    if run is not None:
        info.update(apply_run(model, run))
    return model, tokenizer, info
