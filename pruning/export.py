"""Export a pruned model: a plain HF directory, or compressed-tensors' sparse-bitmask format.

Why two formats: a pruned model saved the usual way (``hf``) is exactly as large as the dense one --
its zeros are stored like any other number.  The ``compressed`` format keeps, for every linear weight
``W [out, in]`` (PyTorch layout), only its non-zero values plus one bit per weight, so the file
shrinks with the sparsity.

``compressed`` is the ``sparse-bitmask`` format of the ``compressed-tensors`` library (what vLLM and
llm-compressor read).  For a linear ``NAME`` (e.g. ``model.layers.0.mlp.up_proj``) the safetensors
file holds, instead of ``NAME.weight``:

    NAME.shape        int64 [2, 1]              (out, in) of the dense weight
    NAME.compressed   weight dtype [nnz]        the non-zero values, row-major
    NAME.bitmask      uint8 [out, ceil(in/8)]   bit c%8 of byte c//8 = (W[r, c] != 0), little bit order
    NAME.row_offsets  int64 [out]               index into ``compressed`` where row r starts

When every linear's mask is exactly 2:4 (2 KEPT of every 4 input weights), ``compressed`` writes
``sparse-24-bitmask`` instead (the format vLLM's 2:4 sparse kernels load): ``NAME.shape`` int64
[2, 1], ``NAME.compressed`` [out, in/2] (the kept values) and ``NAME.bitmask`` (as above).  With
the masks file at hand the bitmasks ARE the masks (a kept weight that is exactly 0 keeps its bit),
so ``besa masks extract`` gives back the masks file's masks bit for bit.

``config.json`` carries ``quantization_config = {"quant_method": "compressed-tensors",
"version": ..., "sparsity_config": {"format": "sparse-bitmask", "targets": ["Linear"], "ignore":
["lm_head"], "global_sparsity": ..., "sparsity_structure": "unstructured"}}``.  compressed-tensors
0.20 (installed here) keeps the config class (``BitmaskConfig``) and the bit-packing helpers but
dropped its sparse compressor, and transformers 5 no longer decompresses sparse checkpoints on
load; so this module writes the format with those helpers and reads it back with
:func:`pruning.models.load_exported` (decompress, then a plain ``from_config`` model; the bitmask
tensors of one weight are :mod:`pruning.bitmask`).

Updated weights: the run directory's ``weights.safetensors`` (SparseGPT, ``--weight-update``) is
applied after the masks (``pruning.runfiles``).  Quantization: when ``quant.safetensors`` sits next to
the masks file, its parameters are applied (``pruning.quant.apply_quant``) after the masks, so both formats store the fake-quantized weights
(values on the 2**wbits grid, still as floats).  ``compressed`` therefore shrinks with the sparsity
only; packing the values to ``wbits`` integers is not done (compressed-tensors does not combine its
sparse and packed-int formats either).

Both formats are written into a temporary directory next to ``out`` and renamed into place.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from besa_common.errors import UserError
from besa_common.fileio import atomic_dir, check_output_path
from besa_common.masks import read_masks
from pruning.bitmask import bitmask24_compress, bitmask_compress, is_24
from pruning.models import load_exported
from pruning.runfiles import load_pruned

__all__ = ["DTYPES", "FORMATS", "ExportReport", "check_export_out", "export_model", "export_pruned", "load_exported", "nonzero_fraction", "prepare_model"]

FORMATS = ("hf", "compressed")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
WEIGHTS_FILE = "model.safetensors"


@dataclass(frozen=True)
class ExportReport:
    """What was written.  Sizes in bytes; ``dense_bytes`` = the same model saved unpruned (``hf``)."""

    out: Path
    format: str
    dtype: str
    bytes: int  # everything in the output directory
    weights_bytes: int  # the safetensors file(s)
    dense_bytes: int  # the same directory with every weight stored densely (what ``hf`` writes)
    sparsity: float  # zeros / size over the compressed (Linear, not lm_head) weights
    quantized: bool

    def summary(self) -> str:
        mb = 1e6
        return (
            f"wrote {self.out} ({self.format}, {self.dtype}{', fake-quantized weights' if self.quantized else ''}): "
            f"{self.bytes / mb:.1f} MB vs dense {self.dense_bytes / mb:.1f} MB "
            f"({100 * self.bytes / self.dense_bytes:.1f}% of dense; linear-weight sparsity {100 * self.sparsity:.1f}%)"
        )


def _compressible(model) -> list[str]:
    """Module names whose weights go to the bitmask: every nn.Linear except lm_head (tied to the embedding)."""
    return [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and not n.endswith("lm_head")]


# ----------------------------------------------------------------------------- export


def prepare_model(model_spec: str, masks: Path, dtype: torch.dtype = torch.float32, quant: Path | None | bool = True):
    """Load ``model_spec`` and rebuild the pruned model (``pruning.runfiles``: masks (1 = kept), the
    updated weights of a weight-changing run, quantization); return (model, tokenizer, quantized).

    ``quant``: a ``quant.safetensors`` path, ``True`` = use the one next to ``masks`` if it exists,
    ``False``/``None`` = none.  The model is loaded in fp32, rebuilt, then cast to ``dtype``.
    """
    model, tokenizer, info = load_pruned(model_spec, masks, quant=quant)
    return model.to(dtype), tokenizer, info["quant"] is not None


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def _dense_weights_bytes(model) -> int:
    """Size of the safetensors file the dense (``hf``) export writes for this model and dtype."""
    from safetensors.torch import save

    seen, probe, total = set(), {}, 0
    for name, t in model.state_dict().items():
        if t.data_ptr() in seen:  # tied weights are stored once
            continue
        seen.add(t.data_ptr())
        total += t.numel() * t.element_size()
        probe[name] = torch.empty(0, dtype=t.dtype)
    # safetensors adds a JSON header (names, dtypes, offsets); measure it on empty tensors.
    return total + len(save(probe, metadata={"format": "pt"}))


def _save_hf(model, tmp: Path) -> None:
    model.save_pretrained(str(tmp), safe_serialization=True)


def _save_compressed(model, tmp: Path, keep: dict | None = None) -> float:
    """Write the sparse-bitmask checkpoint + config; return the sparsity of the compressed weights.

    ``keep`` (module name -> bool ``[out, in]``, the masks file): the bitmasks are the masks; when
    every compressed linear's mask is exactly 2:4 the format is ``sparse-24-bitmask`` (vLLM's 2:4
    sparse kernels), else ``sparse-bitmask``.  Without ``keep``: ``W != 0``, ``sparse-bitmask``."""
    import compressed_tensors
    from compressed_tensors import BitmaskConfig, Sparse24BitMaskConfig
    from compressed_tensors.base import COMPRESSION_VERSION_NAME, QUANTIZATION_CONFIG_NAME, QUANTIZATION_METHOD, QUANTIZATION_METHOD_NAME, SPARSITY_CONFIG_NAME
    from safetensors.torch import save_file

    targets = set(_compressible(model))
    masks = {n: torch.as_tensor(keep[n], dtype=torch.bool) for n in targets} if keep and targets <= set(keep) else None
    two_four = masks is not None and all(is_24(m) for m in masks.values())
    tensors: dict[str, torch.Tensor] = {}
    zeros = total = 0
    seen: set[int] = set()
    for name, t in model.state_dict().items():
        if t.data_ptr() in seen:  # tied lm_head: the config's tie_word_embeddings restores it
            continue
        seen.add(t.data_ptr())
        module = name[: -len(".weight")] if name.endswith(".weight") else None
        if module in targets:
            if two_four:
                parts = bitmask24_compress(t, masks[module])
            else:
                parts = bitmask_compress(t, None if masks is None else masks[module])
            zeros += t.numel() - parts["compressed"].numel()
            total += t.numel()
            tensors.update({f"{module}.{k}": v for k, v in parts.items()})
        else:
            tensors[name] = t.detach().cpu().contiguous()
    save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
    os.chmod(tmp / WEIGHTS_FILE, 0o644)  # safetensors creates it owner-only; save_pretrained's file is 0644
    sparsity = zeros / total if total else 0.0
    model.config.save_pretrained(str(tmp))
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(str(tmp))
    cfg_path = tmp / "config.json"
    cfg = json.loads(cfg_path.read_text())
    if two_four:
        sparsity_cfg = Sparse24BitMaskConfig(global_sparsity=round(sparsity, 6), sparsity_structure="2:4", targets=["Linear"], ignore=["lm_head"])
    else:
        sparsity_cfg = BitmaskConfig(global_sparsity=round(sparsity, 6), sparsity_structure="unstructured", targets=["Linear"], ignore=["lm_head"])
    cfg[QUANTIZATION_CONFIG_NAME] = {
        COMPRESSION_VERSION_NAME: compressed_tensors.__version__,
        QUANTIZATION_METHOD_NAME: QUANTIZATION_METHOD,
        "format": "dense",  # no quantization compressor: the (fake-quantized) values are stored as floats
        SPARSITY_CONFIG_NAME: sparsity_cfg.model_dump(),
    }
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return sparsity


def check_export_out(out, overwrite: bool, inputs=()) -> Path:
    """The export directory's checks (path kind, writable, not an input; non-empty needs ``overwrite``)."""
    out = check_output_path(out, inputs=inputs)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError(f"--out {out} exists and is not empty (pass --overwrite to replace it)")
    return out


def export_model(model, tokenizer, out: Path, fmt: str, quantized: bool = False, overwrite: bool = False, keep: dict | None = None) -> ExportReport:
    """Write the (already masked) ``model`` + ``tokenizer`` to ``out`` in format ``fmt`` atomically.

    ``keep``: the masks (module name -> bool ``[out, in]``) the model was pruned with; ``compressed``
    stores them as its bitmasks (``sparse-24-bitmask`` when all are 2:4)."""
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    out = check_export_out(out, overwrite)
    with atomic_dir(out) as tmp:  # an existing out is replaced only with overwrite (checked above)
        tokenizer.save_pretrained(str(tmp))
        if fmt == "hf":
            _save_hf(model, tmp)
            targets = [model.get_submodule(n).weight for n in _compressible(model)]
            sparsity = sum(int((w == 0).sum()) for w in targets) / max(1, sum(w.numel() for w in targets))
        else:
            sparsity = _save_compressed(model, tmp, keep)
        weights = sum(f.stat().st_size for f in tmp.glob("*.safetensors"))
        total = _dir_bytes(tmp)
        dense = total - weights + _dense_weights_bytes(model)
    dtype = str(next(model.parameters()).dtype).replace("torch.", "")
    return ExportReport(out, fmt, dtype, total, weights, dense, sparsity, quantized)


def export_pruned(model_spec: str, masks: Path, out: Path, fmt: str, dtype: str = "float32", quant: bool = True, overwrite: bool = False) -> ExportReport:
    """``besa export``'s work: rebuild the pruned model from ``masks`` (:func:`prepare_model`), store it
    as ``dtype`` (a :data:`DTYPES` name) in format ``fmt`` at ``out``; ``compressed`` stores the masks
    file's masks as its bitmasks.  The caller has checked ``out`` and holds its lock."""
    model, tokenizer, quantized = prepare_model(model_spec, masks, DTYPES[dtype], quant=quant)
    keep, _ = read_masks(masks)  # the bitmasks of --format compressed are the masks themselves
    return export_model(model, tokenizer, out, fmt, quantized=quantized, overwrite=overwrite, keep=keep)


def nonzero_fraction(model) -> float:
    """Fraction of non-zero weights over the compressible linears (a check for tests and reports)."""
    ws = [model.get_submodule(n).weight for n in _compressible(model)]
    return float(sum(int((w != 0).sum()) for w in ws) / sum(w.numel() for w in ws))
