"""Block driver, stage 4: write the run directory (DESIGN.md "Run directory").

``weights.safetensors`` first (when any weights changed; streamed from the checkpoint files, tied to
the masks by the SHA-256 of the masks file's bytes), then ``masks.safetensors``, ``quant.safetensors``
(with ``wbits``), ``allocation.json`` and ``manifest.json``.  Stale weights/quant files from an earlier
run into the same directory are removed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import platform
from pathlib import Path

import torch

from besa_common.fileio import atomic_write_bytes, atomic_write_json
from besa_common.masks import encode_masks
from besa_common.weights import FILENAME, write_weights
from pruning.device import resolve_device
from pruning.driver.checkpoint import Checkpoint
from pruning.driver.config import PATTERN_CONVENTION
from pruning.quant import save_quant


def _layer_tables(keep_all, records, targets_all) -> tuple[dict, dict, int, int]:
    """Per-layer manifest entries, ``allocation.json`` entries (method records merged in), and the
    total / pruned weight counts."""
    layers: dict[str, dict] = {}
    alloc_layers: dict[str, dict] = {}
    total = pruned = 0
    for name, k in keep_all.items():
        i = int(name.split(".")[2])
        local = name[len(f"model.layers.{i}.") :]
        kk = k.numpy()
        rows_pruned = 1.0 - kk.mean(axis=1)
        realised = float(1.0 - kk.mean())
        total += kk.size
        pruned += int(kk.size - kk.sum())
        rec = dict(records.get(i, {}).get("layers", {}).get(local, {}))
        expected = rec.pop("expected", None)
        layers[name] = {"target": targets_all[name], "expected": expected, "realised": realised}
        entry = {
            "block": i,
            "proj": local.split(".")[-1],
            "shape": [int(kk.shape[0]), int(kk.shape[1])],
            "target": targets_all[name],
            "expected": expected,
            "realised": realised,
            "row_sparsity": [round(float(x), 6) for x in rows_pruned],
        }
        for key, val in rec.items():
            entry.setdefault(key, val)
        alloc_layers[name] = entry
    return layers, alloc_layers, total, pruned


def versions() -> dict[str, str]:
    import transformers

    try:
        from importlib.metadata import version

        besa = version("besa-toolkit")
    except Exception:
        besa = "unknown"
    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__, "besa-toolkit": besa}


def write_run(
    out: Path,
    model,
    method,
    config,
    meta,
    keep_all,
    records,
    qparams_all,
    targets_all,
    wall_s: float,
    updated_all: dict[str, tuple[int, str]],
    ckpt: Checkpoint,
) -> dict:
    opts = getattr(method, "config", None)
    options = dataclasses.asdict(opts) if dataclasses.is_dataclass(opts) else {}
    layers, alloc_layers, total, pruned = _layer_tables(keep_all, records, targets_all)
    blocks = {str(i): {k: v for k, v in r.items() if k != "layers"} for i, r in records.items() if any(k != "layers" for k in r)}
    run_meta = {
        "model": meta.get("model"),
        "method": method.name,
        "options": options,
        "target": config.sparsity,
        "pattern": None if config.pattern is None else f"{config.pattern[0]}:{config.pattern[1]}",
        "pattern_convention": PATTERN_CONVENTION,
        "calibration": meta.get("calibration"),
        "wbits": config.wbits,
        "group_size": config.group_size if config.wbits is not None else None,
        "updated_weights": bool(updated_all),
        "weight_update": dataclasses.asdict(config.weight_update),
    }
    masks_bytes, _ = encode_masks({n: k.numpy() for n, k in keep_all.items()}, run_meta)
    # weights.safetensors first: a masks file saying updated_weights never appears without them.
    if updated_all:
        write_weights(
            out / FILENAME,
            {n: keep_all[n].numpy() for n in updated_all},
            lambda n: ckpt.update_value(*updated_all[n]),
            hashlib.sha256(masks_bytes).hexdigest(),
            {"model": meta.get("model"), "method": method.name},
        )
    else:  # a stale file from an earlier run into this directory
        (out / FILENAME).unlink(missing_ok=True)
    atomic_write_bytes(out / "masks.safetensors", masks_bytes)
    if config.wbits is None:
        (out / "quant.safetensors").unlink(missing_ok=True)
    else:
        save_quant(
            out / "quant.safetensors",
            qparams_all,
            {"wbits": config.wbits, "group_size": config.group_size, "method": "lwc" if any(k.endswith(".clip_upper") for k in qparams_all) else "rtn"},
        )
    allocation = {"version": 1, "method": method.name, "target": config.sparsity, "layers": alloc_layers}
    if blocks:
        allocation["blocks"] = blocks
    atomic_write_json(out / "allocation.json", allocation)
    manifest = dict(run_meta)
    manifest.update(
        {
            "version": 2,  # 2: ``pattern`` means N kept of M (see PATTERN_CONVENTION)
            "target_mode": config.target if method.needs_targets else None,
            "layer_sparsity": dict(config.layer_sparsity) or None,
            "planned_sparsity": targets_all if getattr(method, "needs_prepass", False) else None,
            "device": resolve_device(config.device).type,
            "dtype": config.dtype,
            "seed": config.seed,
            "realised_sparsity": pruned / total if total else 0.0,
            "layers": layers,
            "wall_s": round(wall_s, 3),
            "versions": versions(),
        }
    )
    for key, val in meta.items():
        manifest.setdefault(key, val)
    atomic_write_json(out / "manifest.json", manifest)
    return manifest
