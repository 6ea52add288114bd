"""Model loading: ``(model, tokenizer)`` from a model spec (:mod:`pruning.model_spec`: the embedded
``smollm2-135m``, a local HF directory or a ``.gguf`` file), including the directories ``besa export``
writes (:func:`load_exported`); the decoder blocks and their seven prunable linears; masks applied in
place; a pruned model saved as an HF directory.

Every failure a user can cause is a one-line :class:`~besa_common.errors.UserError`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from besa_common.errors import UserError
from besa_common.fileio import atomic_dir
from besa_common.llama import LINEAR_NAMES
from pruning.bitmask import SPARSE_PARAMS, bitmask_decompress
from pruning.model_spec import check_hf_dir, check_model_spec, resolve_model

# check_model_spec and resolve_model are re-exported: callers name a model and load it from here.
__all__ = [
    "apply_masks",
    "check_model_spec",
    "check_structure",
    "decoder_layers",
    "linear_layers",
    "load_exported",
    "load_model",
    "resolve_model",
    "save_model",
]


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_model(spec: str | os.PathLike, dtype: torch.dtype = torch.float32):
    """Load ``(model, tokenizer)`` for ``spec`` in eval mode on CPU.

    ``spec``: ``smollm2-135m``, a local HF directory (safetensors) or a ``.gguf`` file.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers import logging as hf_logging

    path = resolve_model(spec)
    check_hf_dir(path)
    if _is_sparse_bitmask(path):
        # `besa export --format compressed` output: transformers would load it WITHOUT error but with
        # random linear weights (it no longer decompresses sparse-bitmask), so decompress ourselves.
        model, tokenizer = load_exported(path, dtype=dtype)
        check_structure(model)
        model.config.use_cache = False
        return model, tokenizer
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        try:
            model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, use_safetensors=True)
        except UserError:
            raise
        except Exception as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(f"could not load model from {path}: {msg}") from None
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path))
        except Exception as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(f"could not load the tokenizer from {path}: {msg}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    check_structure(model)
    model.eval()
    model.config.use_cache = False
    return model, tokenizer


def _is_sparse_bitmask(path: Path) -> bool:
    """True for a compressed-tensors sparse-bitmask checkpoint (config.json's sparsity_config)."""
    try:
        raw = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError):
        return False
    sparsity = (raw.get("quantization_config") or {}).get("sparsity_config") or {}
    return sparsity.get("format") in SPARSE_PARAMS


def load_exported(path: Path, dtype: torch.dtype | None = None):
    """Load an exported directory (either format) as ``(model, tokenizer)``, eval mode, on CPU.

    ``hf``: ``from_pretrained``.  ``compressed``: every ``NAME.{shape,compressed,bitmask,row_offsets}``
    group is decompressed to ``NAME.weight`` and loaded (strictly) into a plain model built from the
    config without its ``quantization_config``.
    """
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise UserError(f"{path} is not an exported model directory (no config.json)")
    raw = json.loads(cfg_path.read_text())
    sparsity = (raw.get("quantization_config") or {}).get("sparsity_config") or {}
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    fmt = sparsity.get("format")
    if fmt not in SPARSE_PARAMS:
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype or "auto").eval()
        return model, tokenizer
    need = SPARSE_PARAMS[fmt]
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise UserError(f"{path}: no safetensors weights")
    flat: dict[str, torch.Tensor] = {}
    for f in files:
        with safe_open(str(f), framework="pt") as fh:
            for k in fh.keys():
                flat[k] = fh.get_tensor(k)
    groups: dict[str, dict[str, torch.Tensor]] = {}
    state: dict[str, torch.Tensor] = {}
    for k, v in flat.items():
        module, _, leaf = k.rpartition(".")
        if leaf in need:
            groups.setdefault(module, {})[leaf] = v
        else:
            state[k] = v
    for module, parts in groups.items():
        if set(parts) != set(need):
            raise UserError(f"{path}: compressed weight {module} lacks {sorted(set(need) - set(parts))}")
        state[f"{module}.weight"] = bitmask_decompress(parts, module)
    config = AutoConfig.from_pretrained(str(path))
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=next(iter(state.values())).dtype)
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    if set(missing) - tied or unexpected:
        bad = sorted(set(missing) - tied) or sorted(unexpected)
        raise UserError(f"{path}: weights do not match the config (e.g. {bad[0]!r})")
    model.tie_weights()
    if dtype is not None:
        model = model.to(dtype)
    return model.eval(), tokenizer


def decoder_layers(model) -> torch.nn.ModuleList:
    """The decoder blocks (``model.model.layers``) of a LLaMA-family causal LM."""
    try:
        return model.model.layers
    except AttributeError:
        raise UserError(f"unsupported model class {type(model).__name__}: no model.layers") from None


def check_structure(model) -> None:
    """Raise UserError unless every decoder block has the seven prunable linears."""
    layers = decoder_layers(model)
    if len(layers) == 0:
        raise UserError("model has no decoder layers")
    for name in LINEAR_NAMES:
        try:
            mod = layers[0].get_submodule(name)
        except AttributeError:
            raise UserError(f"unsupported architecture {model.config.model_type!r}: block has no {name}") from None
        if not isinstance(mod, torch.nn.Linear):
            raise UserError(f"unsupported architecture: {name} is a {type(mod).__name__}, not nn.Linear")


def linear_layers(model) -> dict[str, torch.nn.Linear]:
    """HF module name -> nn.Linear for every prunable linear (7 per block), in block order."""
    out: dict[str, torch.nn.Linear] = {}
    for i, layer in enumerate(decoder_layers(model)):
        for name in LINEAR_NAMES:
            out[f"model.layers.{i}.{name}"] = layer.get_submodule(name)
    return out


@torch.no_grad()
def apply_masks(model, keep: Mapping[str, Any]) -> None:
    """Zero pruned weights in place: ``W[r, c] = 0`` where ``keep[name][r, c]`` is False (1 = kept).

    ``keep``: HF module name -> bool ``[out, in]`` (numpy array or tensor).
    """
    for name, k in keep.items():
        try:
            mod = model.get_submodule(name)
        except AttributeError:
            raise UserError(f"masks name layer {name!r}, which this model does not have (masks from another model?)") from None
        w = mod.weight
        k = torch.as_tensor(np.asarray(k) if not isinstance(k, torch.Tensor) else k)
        if tuple(k.shape) != tuple(w.shape):
            raise UserError(f"mask for {name!r} has shape {tuple(k.shape)}, the layer's weight is {tuple(w.shape)} (masks from another model?)")
        w.mul_(k.to(device=w.device, dtype=torch.bool).to(w.dtype))


def save_model(model, tokenizer, out: str | os.PathLike) -> Path:
    """Save ``model`` (e.g. pruned in place) + tokenizer as a plain HF directory, atomically.

    Written into a temporary sibling directory and renamed; an existing ``out`` is replaced only
    if it is itself an HF model directory (has ``config.json``), never an arbitrary folder.
    """
    out = Path(out)
    if out.exists() and not (out / "config.json").is_file():
        raise UserError(f"--save-model {out}: exists and is not a model directory; choose another path")
    with atomic_dir(out) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
    return out
