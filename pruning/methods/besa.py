"""BESA: blockwise parameter-efficient sparsity allocation (Xu et al., ICLR 2024), optionally joint with
4-bit weight-only quantization with learnable clipping.

Lifecycle of one ``prune_block`` call (the driver owns the block loop, propagation and resume):

1. Statistics: run the dense block over the calibration inputs with hooks on its 7 linears,
   accumulating the Wanda statistic (running mean over samples of ||X_c||^2, fp32) with the same
   code as ``--method wanda`` (:mod:`pruning.methods.scoring`).
2. Score ``|W| sqrt(stat)``, rank every row (stable ascending sort) -> ``rank`` and the soft-mask index.
3. Learn: one logit vector over the D = 101 candidate sparsities per row (or per layer), init zeros;
   each step builds straight-through masks from ``p = softmax(sigmoid(logits))``, runs the block with
   ``W.detach() * mask`` (fake-quantized with learnable per-row clipping when ``job.wbits`` is set) and
   minimises the channel-normalised reconstruction loss against ``targets`` plus
   ``beta ((block sparsity - S) / S)^2`` with Prodigy.  Weights stay frozen.
4. Finalise: per-row counts ``floor(s_r C)`` (or adjusted to hit the budget exactly, ``exact_budget``),
   hard masks, a record with expected and realised sparsity per layer; the clipping logits go to the
   driver in ``BlockResult.tensors`` for :func:`pruning.quant.quantize_block`.

Pure tensor functions live in :mod:`pruning.besa_core`.  Masks: bool ``[out, in]``, 1 = kept.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pruning import besa_core as core
from pruning.methods.base import LINEAR_NAMES, BlockInputs, BlockJob, BlockResult, PruningMethod, register
from pruning.methods.scoring import InputNormStat, accumulate_inputs
from pruning.quant import LOWER_LOGIT, LWC_INIT, UPPER_LOGIT, QuantSpec, fake_quant, group_params
from besa_common.errors import UserError

GRANULARITIES = ("row", "layer")
EXACT_BUDGETS = ("off", "layer", "model")


@dataclass(frozen=True)
class BesaConfig:
    """BESA options.  Defaults are the paper's row-wise setting (beta 5, Prodigy lr 1, d_coef 5, 1 epoch).

    ``exact_budget``: ``off`` (the reference: soft penalty, realised lands near S), ``layer`` (every layer
    hits its target exactly) or ``model`` (every block, hence the whole model, hits S exactly while the
    layers inside a block keep their learned sparsities).  ``freeze``: no learning, every row at its
    layer's target (reproduces Wanda's masks).  ``quant_lr``: Adam step for the clipping logits.
    """

    granularity: str = "row"
    smoothing: bool = True
    d_coef: float = 5.0
    beta: float = 5.0
    epochs: int = 1
    lr: float = 1.0
    exact_budget: str = "off"
    freeze: bool = False
    candidates: int = core.D_DEFAULT
    quant_lr: float = 5e-2
    verbose: bool = True

    def __post_init__(self) -> None:
        if self.granularity not in GRANULARITIES:
            raise UserError(f"--besa-granularity must be one of {', '.join(GRANULARITIES)}, got {self.granularity!r}")
        if self.exact_budget not in EXACT_BUDGETS:
            raise UserError(f"--exact-budget must be one of {', '.join(EXACT_BUDGETS)}, got {self.exact_budget!r}")
        if self.epochs < 0:
            raise UserError(f"--epochs must be >= 0, got {self.epochs}")
        for name in ("d_coef", "lr", "quant_lr"):
            if not getattr(self, name) > 0:
                raise UserError(f"--{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        if self.beta < 0:
            raise UserError(f"--beta must be >= 0, got {self.beta}")
        if self.candidates < 2:
            raise UserError(f"--candidates must be >= 2, got {self.candidates}")


def _autocast(device: torch.device, dtype):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@contextlib.contextmanager
def _frozen(module: nn.Module):
    """Weights stay frozen: no parameter of the block collects gradients while the logits learn."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in flags:
            p.requires_grad_(f)


@dataclass
class _Layer:
    """Per-linear state during one block: frozen weight, ranks, candidate counts, learnable logits."""

    name: str
    W: torch.Tensor  # (R, C) frozen weight on the device
    rank: torch.Tensor  # (R, C) int32 sorted position of each entry (ascending score)
    index: torch.Tensor  # (R, C) int64 index into the cumulative coefficients (soft mask)
    target: float  # this layer's target sparsity
    logits: torch.Tensor  # (R or 1, D) learnable
    upper: torch.Tensor | None = None  # (R,) clipping logits (joint quantization)
    lower: torch.Tensor | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.W.shape)

    @property
    def numel(self) -> int:
        return self.W.numel()


def _layer_sparsities(layers: list[_Layer], cands: torch.Tensor, smoothing: bool):
    """(p, s, layer sparsity) per layer; s is ``[R]`` (row-wise) or ``[1]`` (layer-wise)."""
    out = []
    for L in layers:
        p = core.coefficients(L.logits, smoothing)
        s = core.expected_sparsity(p, cands)
        out.append((p, s, s.mean()))
    return out


def block_sparsity(layers: list[_Layer], layer_s: list[torch.Tensor]) -> torch.Tensor:
    """Parameter-count weighted mean of the layers' expected sparsities."""
    total = sum(L.numel for L in layers)
    return sum(s * (L.numel / total) for L, s in zip(layers, layer_s))


def finalise_counts(layers: list[_Layer], row_s: list[torch.Tensor], mode: str, freeze: bool) -> list[torch.Tensor]:
    """Per-row prune counts for every layer (int64 ``[R]``).

    ``freeze``: ``int(C * S)`` for every row, exactly Wanda's count.  ``off``: ``floor(s_r C)``.
    ``layer`` / ``model``: counts proportional to ``s_r C`` rescaled to hit ``round(S * R * C)`` per layer,
    or ``round(sum_l S_l R_l C_l)`` over the whole block (so the model total is exact too).
    """
    if freeze:
        return [torch.full((L.shape[0],), int(L.shape[1] * L.target), dtype=torch.int64) for L in layers]
    desired = [(s.detach().double().cpu() * L.shape[1]).expand(L.shape[0]) for L, s in zip(layers, row_s)]
    caps = [torch.full((L.shape[0],), L.shape[1], dtype=torch.int64) for L in layers]
    if mode == "off":
        return [core.row_counts(s.cpu(), L.shape[1], L.shape[0]) for L, s in zip(layers, row_s)]
    if mode == "layer":
        return [core.exact_counts(d, c, round(L.target * L.numel)) for L, d, c in zip(layers, desired, caps)]
    total = round(sum(L.target * L.numel for L in layers))
    k = core.exact_counts(torch.cat(desired), torch.cat(caps), total)
    return list(torch.split(k, [L.shape[0] for L in layers]))


@register("besa")
class Besa(PruningMethod):
    """BESA (see the module docstring for the lifecycle).  Needs the driver's targets; returns its own
    quantization parameters (learned clipping) when ``job.wbits`` is set."""

    needs_targets = True
    handles_quant = True

    def __init__(self, config: BesaConfig | None = None, **options: Any) -> None:
        self.config = config if config is not None else BesaConfig(**options)

    @classmethod
    def add_arguments(cls, parser) -> None:
        g = parser
        g.add_argument("--besa-granularity", choices=GRANULARITIES, default="row",
                       help="BESA: one learnable logit vector per output row (paper default) or per layer")
        g.add_argument("--no-smoothing", action="store_true",
                       help="BESA: coefficients softmax(logits) instead of softmax(sigmoid(logits)); "
                            "smoothing confines every row to about [0.376, 0.624] sparsity")
        g.add_argument("--d-coef", type=float, default=5.0, help="BESA: Prodigy d_coef (default 5)")
        g.add_argument("--beta", type=float, default=5.0, help="BESA: weight of the sparsity penalty (default 5)")
        g.add_argument("--epochs", type=int, default=1, help="BESA: epochs over the calibration set (default 1)")
        g.add_argument("--lr", type=float, default=1.0, help="BESA: Prodigy lr (default 1)")
        g.add_argument("--exact-budget", choices=EXACT_BUDGETS, default="off",
                       help="BESA: off = soft budget (reference); layer = every layer hits the target exactly; "
                            "model = every block and so the whole model hits it exactly")
        g.add_argument("--freeze", action="store_true",
                       help="BESA: no learning, every row at the uniform target (equals Wanda; for checks)")
        g.add_argument("--quant-lr", type=float, default=5e-2,
                       help="BESA + --wbits: Adam step for the learnable clipping logits (default 0.05)")

    @classmethod
    def from_args(cls, args) -> "Besa":
        return cls(BesaConfig(
            granularity=getattr(args, "besa_granularity", "row"),
            smoothing=not getattr(args, "no_smoothing", False),
            d_coef=getattr(args, "d_coef", 5.0),
            beta=getattr(args, "beta", 5.0),
            epochs=getattr(args, "epochs", 1),
            lr=getattr(args, "lr", 1.0),
            exact_budget=getattr(args, "exact_budget", "off"),
            freeze=getattr(args, "freeze", False),
            quant_lr=getattr(args, "quant_lr", 5e-2),
        ))

    # ------------------------------------------------------------------ one block
    def prune_block(self, block: nn.Module, inputs: BlockInputs, targets: torch.Tensor | None, job: BlockJob) -> BlockResult:
        cfg = self.config
        t0 = time.perf_counter()
        if job.pattern is not None:
            raise UserError("besa learns unstructured sparsity; drop --pattern (use wanda/sparsegpt for n:m)")
        names = [n for n in LINEAR_NAMES if n in job.sparsity]
        for n in names:
            if not 0.0 < job.sparsity[n] < 1.0:
                raise UserError(f"sparsity must be in (0, 1), got {job.sparsity[n]} for {job.prefix}{n}")
        spec = QuantSpec(int(job.wbits), int(job.group_size)) if job.wbits else None
        dev = job.device
        mods = dict(block.named_modules())
        if spec is not None:
            for n in names:
                spec.check(f"{job.prefix}{n}", mods[n].weight.shape[1])

        # Wanda's statistic, computed by the same code as --method wanda (frozen BESA == Wanda bit for bit).
        norm_stat = InputNormStat()
        accumulate_inputs(block, inputs, job, tuple(names), norm_stat.update)
        stats = norm_stat.stat
        D = cfg.candidates
        cands = core.candidates(D).to(dev)
        layers: list[_Layer] = []
        for n in names:
            W = mods[n].weight.detach()
            R, C = W.shape
            rank = core.sort_ranks(core.wanda_score(W, stats[n]))
            L = _Layer(  # rank kept as int32: half the memory of int64, only compared, never gathered with
                name=n, W=W, rank=rank.to(torch.int32), index=core.soft_index(rank, core.candidate_counts(C, D)),
                target=float(job.sparsity[n]),
                logits=torch.zeros(R if cfg.granularity == "row" else 1, D, device=dev, requires_grad=True),
            )
            if spec is not None:
                L.upper = torch.full((R,), LWC_INIT, device=dev, requires_grad=True)
                L.lower = torch.full((R,), LWC_INIT, device=dev, requires_grad=True)
            layers.append(L)
        S = sum(L.target * L.numel for L in layers) / sum(L.numel for L in layers)

        losses: list[float] = []
        d_final = None
        if not cfg.freeze and cfg.epochs > 0:
            if targets is None:  # library use without a driver: dense block on the given inputs
                targets = torch.cat([inputs.run(block, i, dev).detach() for i in range(len(inputs))])
            losses, d_final = self._learn(block, inputs, targets, job, layers, cands, S, spec)

        with torch.no_grad():
            sp = _layer_sparsities(layers, cands, cfg.smoothing)
            counts = finalise_counts(layers, [s for _, s, _ in sp], cfg.exact_budget, cfg.freeze)
            keep = {L.name: core.hard_keep(L.rank, k).cpu() for L, k in zip(layers, counts)}

        record, tensors = self._record(job, layers, sp, keep, losses, d_final, S, time.perf_counter() - t0)
        if spec is not None:
            for L in layers:
                tensors[f"{L.name}.{UPPER_LOGIT}"] = L.upper.detach().float().cpu()
                tensors[f"{L.name}.{LOWER_LOGIT}"] = L.lower.detach().float().cpu()
        if cfg.verbose:
            from tqdm import tqdm

            tqdm.write(self._log_line(job, record), file=sys.stderr)  # does not break the driver's bar
        return BlockResult(keep=keep, record=record, tensors=tensors)

    def _learn(self, block, inputs, targets, job, layers, cands, S, spec):
        """One reconstruction run: logits (Prodigy) and clipping logits (Adam) learn, weights stay frozen."""
        from prodigyopt import Prodigy

        cfg = self.config
        dev = job.device
        opt = Prodigy([L.logits for L in layers], lr=cfg.lr, d_coef=cfg.d_coef, weight_decay=0.0)
        qopt = None
        if spec is not None:
            qopt = torch.optim.Adam([t for L in layers for t in (L.upper, L.lower)], lr=cfg.quant_lr)
        # fp16 gradients through a block can underflow: scale the loss (bf16/fp32 need no scaler).
        scaler = torch.amp.GradScaler(dev.type, enabled=(dev.type == "cuda" and job.autocast_dtype == torch.float16))
        losses: list[float] = []
        with _frozen(block):
            for _epoch in range(cfg.epochs):
                for i in range(len(inputs)):
                    sp = _layer_sparsities(layers, cands, cfg.smoothing)
                    weights = {}
                    for L, (p, s, _) in zip(layers, sp):
                        k = core.row_counts(s, L.shape[1], L.shape[0])
                        hard = core.hard_keep(L.rank, k)
                        mask = core.ste_mask(hard, core.soft_keep(p, L.index))
                        W = L.W.float() * mask
                        if spec is not None:
                            up, lo = torch.sigmoid(L.upper), torch.sigmoid(L.lower)
                            scale, zero = group_params(L.W.float() * hard, spec, up, lo)
                            W = fake_quant(W, scale, zero, spec) * hard
                        weights[f"{L.name}.weight"] = W.to(L.W.dtype)
                    x = inputs.hidden[i : i + 1].to(dev)
                    with _autocast(dev, job.autocast_dtype):
                        out = torch.func.functional_call(block, weights, (x,), dict(inputs.kwargs))
                    out = out[0] if isinstance(out, (tuple, list)) else out
                    rec = core.reconstruction_loss(out, targets[i : i + 1].to(dev))
                    bs = block_sparsity(layers, [ls for _, _, ls in sp])
                    loss = rec + core.sparsity_penalty(bs, S, cfg.beta)
                    opt.zero_grad(set_to_none=True)
                    if qopt is not None:
                        qopt.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    if qopt is not None:
                        scaler.step(qopt)
                    scaler.update()
                    losses.append(float(rec.detach()))
        return losses, float(opt.param_groups[0].get("d", 0.0))

    def _record(self, job, layers, sp, keep, losses, d_final, S, seconds):
        record: dict[str, Any] = {
            "method": "besa",
            "granularity": self.config.granularity,
            "smoothing": self.config.smoothing,
            "exact_budget": self.config.exact_budget,
            "freeze": self.config.freeze,
            "target": S,
            "steps": len(losses),
            "loss_first": losses[0] if losses else None,
            "loss_last": losses[-1] if losses else None,
            "loss_mean_last_quarter": (sum(losses[-max(1, len(losses) // 4):]) / max(1, len(losses) // 4)) if losses else None,
            "prodigy_d": d_final,
            "seconds": seconds,
            "layers": {},
        }
        n_total = sum(L.numel for L in layers)
        exp_block = real_block = 0.0
        for L, (_, s, ls) in zip(layers, sp):
            expected = L.target if self.config.freeze else float(ls)
            realised = 1.0 - float(keep[L.name].float().mean())
            s_rows = s.detach().float().cpu()
            record["layers"][L.name] = {
                "target": L.target,
                "expected": expected,
                "realised": realised,
                "row_expected_min": float(s_rows.min()),
                "row_expected_max": float(s_rows.max()),
                "row_expected_std": float(s_rows.std()) if s_rows.numel() > 1 else 0.0,
            }
            exp_block += expected * L.numel / n_total
            real_block += realised * L.numel / n_total
        record["expected"] = exp_block
        record["realised"] = real_block
        return record, {}

    @staticmethod
    def _log_line(job, record) -> str:
        short = {n: n.split(".")[-1].replace("_proj", "") for n in record["layers"]}
        per = " ".join(f"{short[n]} {v['expected']:.3f}/{v['realised']:.3f}" for n, v in record["layers"].items())
        loss = ""
        if record["loss_first"] is not None:
            loss = f" | loss {record['loss_first']:.4g} -> {record['loss_mean_last_quarter']:.4g}"
        return (f"besa block {job.index}: sparsity expected {record['expected']:.4f} realised {record['realised']:.4f} "
                f"(target {record['target']:.4f}) | expected/realised {per}{loss} | {record['seconds']:.1f}s")
