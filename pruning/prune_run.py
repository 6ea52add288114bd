"""``besa prune``'s work as a library call: load the model, check it against the N:M pattern and the
quantization groups, draw (or take) the calibration windows, run the block driver into a run
directory, optionally save the pruned model; and the ``--layer-sparsity`` file reader.

Everything here takes explicit parameters; ``besa/commands/prune.py`` parses and checks the command
line, takes the run directory's lock and calls :func:`prune_to_dir`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from besa_common.errors import UserError
from besa_common.sparsity import check_layer_target
from pruning import models
from pruning.data import calibration_with_info
from pruning.device import resolve_device
from pruning.driver import DriverConfig, check_group_size, prune_model
from pruning.methods.base import PruningMethod


def read_layer_sparsity(path: str | Path | None, flag: str = "--layer-sparsity") -> dict[str, float]:
    """``{HF module name: sparsity}`` from a JSON object, or from an ``allocation.json`` (each layer's
    realised sparsity, else its target); every value a fraction in [0, 1).  None -> ``{}``.
    ``flag`` names the option in error messages."""
    if path is None:
        return {}
    p = Path(path)
    try:
        obj = json.loads(p.read_text())
    except FileNotFoundError:
        raise UserError(f"{flag}: {p} not found") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{flag}: {p} is not valid JSON ({exc})") from None
    if isinstance(obj, dict) and "layers" in obj and isinstance(obj["layers"], dict):  # an allocation.json
        obj = {k: v.get("realised", v.get("target")) if isinstance(v, dict) else v for k, v in obj["layers"].items()}
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in obj.values()):
        raise UserError(f"{flag}: {p} must hold a non-empty JSON object {{layer name: sparsity}}")
    return {str(k): check_layer_target(v, f"{flag}: {p}: sparsity of {k!r}") for k, v in obj.items()}


def prune_to_dir(
    model_spec: str,
    method: PruningMethod,
    config: DriverConfig,
    out: str | Path,
    *,
    calib_dataset: str | None = None,
    nsamples: int | None = None,
    seqlen: int | None = None,
    data_path: str | None = None,
    calib_ids: tuple[np.ndarray, dict[str, Any]] | None = None,
    save_model: str | Path | None = None,
) -> dict:
    """Prune ``model_spec`` with ``method`` into the run directory ``out``; return the manifest.

    Calibration: ``calib_ids`` = ``(ids int64 [n, T], record)`` (token-exact windows, e.g. from
    :func:`pruning.token_ids.load_token_ids`), else ``nsamples`` windows of ``seqlen`` tokens drawn
    from ``calib_dataset`` (``data_path``: local benchmark files) with ``config.seed``.
    ``save_model``: also write the pruned model as an HF directory.  The caller checks ``out`` and
    ``save_model`` and holds ``out``'s lock."""
    resolve_device(config.device)  # fail before the slow model load
    model, tokenizer = models.load_model(model_spec, dtype=torch.float32)
    if config.pattern is not None:
        n, m = config.pattern
        bad = [name for name, lin in models.linear_layers(model).items() if lin.in_features % m]
        if bad:
            raise UserError(f"--pattern {n}:{m}: in-features of {bad[0]} are not a multiple of {m}")
    if config.wbits is not None:
        check_group_size(model, config.group_size)
    if calib_ids is not None:  # token-exact calibration from a file
        ids, record = calib_ids
        calib = torch.from_numpy(ids)
        calibration = {"dataset": None, "nsamples": int(ids.shape[0]), "seqlen": int(ids.shape[1]), "seed": config.seed, "sampling": "ids", "ids": record}
    else:
        calib, info = calibration_with_info(tokenizer, calib_dataset, nsamples, seqlen, config.seed, data_path)
        if info.note:
            print(f"[besa prune] note: {info.note}")
        calibration = {**info.__dict__}
    meta = {"model": str(model_spec), "calibration": calibration}
    manifest = prune_model(model, method, calib, out, config, meta=meta)
    if save_model:
        models.save_model(model, tokenizer, save_model)
    return manifest
