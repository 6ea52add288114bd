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
:func:`load_exported` (decompress, then a plain ``from_config`` model).

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

FORMATS = ("hf", "compressed")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
BITMASK_PARAMS = ("shape", "compressed", "bitmask", "row_offsets")
# compressed-tensors sparsity format -> the tensors stored per compressed linear
SPARSE_PARAMS = {"sparse-bitmask": BITMASK_PARAMS, "sparse-24-bitmask": ("shape", "compressed", "bitmask")}
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


# ----------------------------------------------------------------------------- the bitmask format


def bitmask_compress(w: torch.Tensor, keep: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Compress one dense 2-D weight ``[out, in]`` into the four sparse-bitmask tensors (local names).

    ``keep`` (bool ``[out, in]``, the masks file's mask): the bitmask is the mask itself, so a kept
    weight that happens to be 0 (quantized) keeps its bit and extraction gives back the exact mask;
    without it the bitmask is ``W != 0``."""
    from compressed_tensors.utils.helpers import pack_bitmasks

    if w.ndim != 2:
        raise ValueError(f"bitmask_compress: expected a 2-D weight, got shape {tuple(w.shape)}")
    w = w.detach().cpu().contiguous()
    nonzero = w != 0 if keep is None else torch.as_tensor(keep, dtype=torch.bool)  # (out, in)
    row_counts = nonzero.sum(dim=1)
    return {
        "shape": torch.tensor(list(w.shape), dtype=torch.int64).reshape(-1, 1),  # (2, 1)
        "compressed": w[nonzero].contiguous(),  # (nnz,), row-major
        "bitmask": pack_bitmasks(nonzero).contiguous(),  # (out, ceil(in/8)) uint8
        "row_offsets": (torch.cumsum(row_counts, 0) - row_counts).to(torch.int64),  # (out,)
    }


def is_24(keep: torch.Tensor) -> bool:
    """Exactly 2 kept in every 4 consecutive input weights of every row (N:M = N kept of M)."""
    return keep.ndim == 2 and keep.shape[1] % 4 == 0 and bool((keep.reshape(keep.shape[0], -1, 4).sum(-1) == 2).all())


def bitmask24_compress(w: torch.Tensor, keep: torch.Tensor) -> dict[str, torch.Tensor]:
    """compressed-tensors ``sparse-24-bitmask`` tensors of ``w [out, in]`` under a 2:4 ``keep``:
    ``shape`` int64 [2, 1], ``compressed`` [out, in/2] (the kept values, row-major), ``bitmask``
    uint8 [out, ceil(in/8)] (``keep`` packed, little bit order) — what vLLM's 2:4 kernels load."""
    from compressed_tensors.utils.helpers import pack_bitmasks

    keep = torch.as_tensor(keep, dtype=torch.bool)
    if not is_24(keep):
        raise ValueError("bitmask24_compress: the mask is not 2:4")
    w = w.detach().cpu().contiguous()
    return {
        "shape": torch.tensor(list(w.shape), dtype=torch.int64).reshape(-1, 1),
        "compressed": w[keep].reshape(w.shape[0], w.shape[1] // 2).contiguous(),
        "bitmask": pack_bitmasks(keep).contiguous(),
    }


def bitmask_decompress(parts: dict[str, torch.Tensor], name: str = "?") -> torch.Tensor:
    """Inverse of :func:`bitmask_compress`; checks the pieces agree (a corrupt file -> UserError)."""
    from compressed_tensors.utils.helpers import unpack_bitmasks

    shape = [int(x) for x in parts["shape"].reshape(-1).tolist()]
    bitmask, values = parts["bitmask"], parts["compressed"].reshape(-1)
    if len(shape) != 2 or tuple(bitmask.shape) != (shape[0], (shape[1] + 7) // 8):
        raise UserError(f"compressed weight {name}: bitmask shape {tuple(bitmask.shape)} does not fit dense shape {shape}")
    keep = unpack_bitmasks(bitmask.to(torch.uint8), shape)  # (out, in) bool
    if int(keep.sum()) != values.numel():
        raise UserError(f"compressed weight {name}: bitmask has {int(keep.sum())} set bits but {values.numel()} values")
    w = torch.zeros(shape, dtype=values.dtype)
    w[keep] = values
    return w


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
    from pruning.models import load_model
    from pruning.runfiles import apply_run, open_run

    run = open_run(masks, quant=quant if quant else False)  # validate before the slow model load
    model, tokenizer = load_model(model_spec, dtype=torch.float32)
    info = apply_run(model, run)
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


# ----------------------------------------------------------------------------- reload


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


def nonzero_fraction(model) -> float:
    """Fraction of non-zero weights over the compressible linears (a check for tests and reports)."""
    ws = [model.get_submodule(n).weight for n in _compressible(model)]
    return float(sum(int((w != 0).sum()) for w in ws) / sum(w.numel() for w in ws))
