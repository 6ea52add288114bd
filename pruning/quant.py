"""Weight-only quantization: per-group asymmetric uniform fake-quantization, RTN or learnable clipping.

Conventions
-----------
* A weight ``W`` is ``[out, in]``; groups are ``group_size`` consecutive input columns of one output row,
  so a layer has ``[out, in / group_size]`` (scale, zero) pairs.  ``group_size`` must divide ``in``.
* Asymmetric uniform grid with ``2**wbits`` levels: ``q = clamp(round(w / scale) + zero, 0, 2**wbits - 1)``,
  ``w_hat = (q - zero) * scale``.  The range of a group is ``[min(w, 0), max(w, 0)]`` so 0 is always on
  the grid: a pruned (zero) weight dequantizes to exactly 0.0, and we re-apply the keep mask anyway.
* Learnable clipping (the BESA joint mode, after OmniQuant's LWC): per output row two logits
  ``(upper, lower)``; the group range becomes ``[sigmoid(lower) * min, sigmoid(upper) * max]``.
  ``round`` is straight-through so the clipping logits get gradients through ``scale`` and ``zero``.
  Logits of ``+inf`` give plain round-to-nearest (RTN).

Files: ``quant.safetensors`` holds, for every quantized linear ``NAME`` (full HF module name),
``NAME.scale`` and ``NAME.zero`` (fp32 ``[out, in / group_size]``; ``zero`` holds integers) and, for
learned clipping, ``NAME.clip_upper`` / ``NAME.clip_lower`` (fp32 ``[out]``, the factors in (0, 1)).
The metadata records ``format``, ``version``, ``wbits``, ``group_size`` and ``method`` (``rtn`` | ``lwc``).
Dequantization depends only on (scale, zero, wbits, group_size), so ``apply_quant`` on the saved
parameters reproduces the driver's fake-quantized weights bit-exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from besa_common.errors import UserError
from besa_common.fileio import atomic_write_bytes

FORMAT = "besa-quant"
VERSION = 1
# Method-supplied tensors (BlockResult.tensors) that quantize_block understands: learnable-clipping
# logits per output row, keyed "<local linear name>.<suffix>".
UPPER_LOGIT = "lwc_upper"
LOWER_LOGIT = "lwc_lower"
# sigmoid(4) ~= 0.982: OmniQuant's LWC initialisation (start just inside the RTN range).
LWC_INIT = 4.0


@dataclass(frozen=True)
class QuantSpec:
    """``wbits``: bits per weight (2..8); ``group_size``: input columns per (scale, zero) pair."""

    wbits: int
    group_size: int = 128

    def __post_init__(self) -> None:
        if not isinstance(self.wbits, int) or not 2 <= self.wbits <= 8:
            raise UserError(f"--wbits must be an integer in 2..8, got {self.wbits!r}")
        if not isinstance(self.group_size, int) or self.group_size < 1:
            raise UserError(f"--group-size must be a positive integer, got {self.group_size!r}")

    @property
    def qmax(self) -> int:
        return 2**self.wbits - 1

    def check(self, name: str, in_features: int) -> None:
        """Raise a one-line UserError unless the group size divides ``in_features``."""
        if in_features % self.group_size:
            raise UserError(f"--group-size {self.group_size} does not divide the {in_features} input features of {name}")


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """round() in the forward pass, identity in the backward pass (straight-through estimator)."""
    return (x.round() - x).detach() + x


def group_params(
    w: torch.Tensor,
    spec: QuantSpec,
    upper: torch.Tensor | None = None,
    lower: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, zero) per group, each ``[out, in / group_size]`` fp32, differentiable in the clip factors.

    ``w``: ``[out, in]`` (pruned entries already 0).  ``upper`` / ``lower``: clip factors in (0, 1],
    shape ``[out]`` (None = 1, i.e. RTN).  ``zero`` is an integer-valued float (rounded with STE).
    """
    out_f, in_f = w.shape
    g = w.float().reshape(out_f, in_f // spec.group_size, spec.group_size)  # (R, G, g)
    xmax = g.amax(dim=2).clamp(min=0.0)  # (R, G); 0 always inside the range
    xmin = g.amin(dim=2).clamp(max=0.0)
    if upper is not None:
        xmax = xmax * upper.float()[:, None]
    if lower is not None:
        xmin = xmin * lower.float()[:, None]
    # An all-zero group (fully pruned) would give scale 0: any positive scale maps 0 -> 0.
    scale = ((xmax - xmin) / spec.qmax).clamp(min=1e-8)
    zero = round_ste(-xmin / scale).clamp(0, spec.qmax)
    return scale, zero


def fake_quant(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """Quantize-dequantize ``w`` ``[out, in]`` with per-group ``scale``/``zero`` ``[out, in/g]``; STE rounding.

    Returns fp32 ``[out, in]``.  Exact zeros stay exactly zero (0 / s rounds to 0, + zero - zero = 0).
    """
    out_f, in_f = w.shape
    g = w.float().reshape(out_f, in_f // spec.group_size, spec.group_size)  # (R, G, g)
    s, z = scale[:, :, None], zero[:, :, None]
    q = (round_ste(g / s) + z).clamp(0, spec.qmax)
    return ((q - z) * s).reshape(out_f, in_f)


def clip_factors(upper_logit: torch.Tensor | None, lower_logit: torch.Tensor | None):
    """Sigmoid-parameterised clip factors in (0, 1) from per-row logits (None stays None = no clipping)."""
    up = None if upper_logit is None else torch.sigmoid(upper_logit.float())
    lo = None if lower_logit is None else torch.sigmoid(lower_logit.float())
    return up, lo


def quantize_weight(
    w: torch.Tensor,
    keep: torch.Tensor | None,
    spec: QuantSpec,
    upper_logit: torch.Tensor | None = None,
    lower_logit: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Fake-quantize one masked weight.  Returns (w_hat fp32 ``[out, in]``, params).

    ``keep``: bool ``[out, in]``, 1 = kept (None = dense).  Pruned entries are zeroed before the range is
    taken and stay exactly zero.  ``params``: ``scale``, ``zero`` and, with clipping logits,
    ``clip_upper`` / ``clip_lower`` (detached, fp32, CPU-independent of autograd).
    """
    w = w.float()
    if keep is not None:
        w = w * keep.to(w.device, torch.float32)
    up, lo = clip_factors(upper_logit, lower_logit)
    scale, zero = group_params(w, spec, up, lo)
    w_hat = fake_quant(w, scale, zero, spec)
    if keep is not None:
        w_hat = w_hat * keep.to(w.device, torch.float32)
    params = {"scale": scale.detach(), "zero": zero.detach()}
    if up is not None:
        params["clip_upper"] = up.detach()
    if lo is not None:
        params["clip_lower"] = lo.detach()
    return w_hat, params


def _linears(block: nn.Module, names) -> dict[str, nn.Linear]:
    mods = dict(block.named_modules())
    return {n: mods[n] for n in names}


def quantize_block(block: nn.Module, keep: dict[str, torch.Tensor], job: Any, method_tensors: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Fake-quantize the block's linears in place (after masking); return the parameters to save.

    ``keep``: local linear name -> bool ``[out, in]`` (1 = kept); only these linears are quantized.
    ``job``: a :class:`pruning.methods.base.BlockJob` (uses ``wbits`` and ``group_size``).
    ``method_tensors``: the method's ``BlockResult.tensors``; ``"<name>.lwc_upper"`` / ``"<name>.lwc_lower"``
    per-row clipping logits select learned clipping for that linear, otherwise RTN.
    Returns local-name-keyed fp32 CPU tensors: ``"<name>.scale"``, ``"<name>.zero"`` (+ clip factors).
    """
    spec = QuantSpec(int(job.wbits), int(job.group_size))
    method_tensors = method_tensors or {}
    out: dict[str, torch.Tensor] = {}
    for name, lin in _linears(block, keep).items():
        spec.check(f"{getattr(job, 'prefix', '')}{name}", lin.weight.shape[1])
        up = method_tensors.get(f"{name}.{UPPER_LOGIT}")
        lo = method_tensors.get(f"{name}.{LOWER_LOGIT}")
        dev = lin.weight.device
        with torch.no_grad():
            w_hat, params = quantize_weight(
                lin.weight.data,
                keep[name].to(dev),
                spec,
                None if up is None else up.to(dev),
                None if lo is None else lo.to(dev),
            )
            lin.weight.data.copy_(w_hat.to(lin.weight.dtype))
        for k, v in params.items():
            out[f"{name}.{k}"] = v.float().cpu().contiguous()
    return out


def dequantize(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """Fake-quantize ``w`` with saved (scale, zero): same arithmetic as the driver, no autograd."""
    with torch.no_grad():
        return fake_quant(w, scale.to(w.device).float(), zero.to(w.device).float(), spec)


def save_quant(path: str | Path, qparams: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write ``quant.safetensors`` atomically.  ``meta`` must hold ``wbits`` and ``group_size``."""
    from safetensors.torch import save

    for key in ("wbits", "group_size"):
        if key not in meta:
            raise ValueError(f"save_quant: meta lacks {key!r}")
    md = {str(k): str(v) for k, v in meta.items()}
    md.update(format=FORMAT, version=str(VERSION))
    md.setdefault("method", "lwc" if any(k.endswith(".clip_upper") for k in qparams) else "rtn")
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in sorted(qparams.items())}
    atomic_write_bytes(path, save(tensors, metadata=md))


def load_quant(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read ``quant.safetensors`` -> (params, meta) with ``wbits``/``group_size``/``version`` as ints."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise UserError(f"no quantization file at {path}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            md = dict(fh.metadata() or {})
            params = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:  # a corrupt/foreign file is user input, not a bug
        raise UserError(f"{path} is not a readable safetensors file ({exc.__class__.__name__})") from None
    if md.get("format") != FORMAT:
        raise UserError(f"{path} is not a besa quantization file (format {md.get('format')!r})")
    if int(md.get("version", -1)) > VERSION:
        raise UserError(f"{path} has quantization format version {md['version']}; this besa reads up to {VERSION}")
    meta: dict[str, Any] = dict(md)
    for key in ("wbits", "group_size", "version"):
        meta[key] = int(md[key])
    return params, meta


def apply_quant(model: nn.Module, qparams: dict[str, torch.Tensor], meta: dict[str, Any]) -> list[str]:
    """Fake-quantize a (masked) model's linears in place with saved parameters; return the names done.

    ``qparams`` keys are full HF module names + ``.scale`` / ``.zero``.  Zeros of the masked model stay
    zero, so apply the masks first.  Raises UserError if a named module is missing or its shape disagrees.
    """
    spec = QuantSpec(int(meta["wbits"]), int(meta["group_size"]))
    mods = dict(model.named_modules())
    names = sorted(k[: -len(".scale")] for k in qparams if k.endswith(".scale"))
    for name in names:
        lin = mods.get(name)
        if lin is None or not hasattr(lin, "weight"):
            raise UserError(f"quantization parameters name {name}, which this model does not have")
        out_f, in_f = lin.weight.shape
        spec.check(name, in_f)
        scale, zero = qparams[f"{name}.scale"], qparams.get(f"{name}.zero")
        if zero is None or tuple(scale.shape) != (out_f, in_f // spec.group_size) or scale.shape != zero.shape:
            raise UserError(f"quantization parameters of {name} do not match its weight shape {[out_f, in_f]}")
        with torch.no_grad():
            lin.weight.data.copy_(dequantize(lin.weight.data, scale, zero, spec).to(lin.weight.dtype))
    return names
