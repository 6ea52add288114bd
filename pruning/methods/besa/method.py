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

n:m (``job.pattern`` set, e.g. ``--pattern 2:4``): steps 2-4 change.  Each group of M consecutive
input weights of a row gets a logit vector over its C(M, K) keep patterns (K kept), initialised so
that the most probable pattern is Wanda's n:m choice; each step uses the most probable pattern
(straight-through, gradient through ``sum_p softmax(logits)_p patterns_p``); no sparsity penalty (every group
keeps exactly K); finalise = the most probable pattern.  See :mod:`pruning.methods.besa.nm`.

Without driver targets (the driver's default pruned-target mode, and library use) the statistics pass
also records the dense block's outputs and uses them as targets (one dense pass instead of two).

Pure tensor functions live in :mod:`pruning.methods.besa.core` and :mod:`pruning.methods.besa.nm`.  Masks: bool
``[out, in]``, 1 = kept.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

import pruning.methods.besa.core as core
import pruning.methods.besa.nm as nm
from pruning.device import autocast_context
from pruning.methods.base import LINEAR_NAMES, BlockInputs, BlockJob, BlockResult, PruningMethod, register
from pruning.methods.scoring import InputNormStat, accumulate_inputs
from pruning.quant import LOWER_LOGIT, LWC_INIT, UPPER_LOGIT, QuantSpec, fake_quant, group_params
from besa_common.errors import UserError

GRANULARITIES = ("row", "layer")
EXACT_BUDGETS = ("off", "layer", "model")


# Prodigy settings when the user gives none: the paper's for unstructured BESA; for learned n:m the
# ones measured to beat Wanda n:m on SmolLM2 (docs/results.md, learned n:m).
UNSTRUCTURED_OPTIMISER_DEFAULTS = {"d_coef": 5.0, "epochs": 1, "lr": 1.0}
NM_OPTIMISER_DEFAULTS = {"d_coef": 1.0, "epochs": 3, "lr": 0.2}


@dataclass(frozen=True)
class BesaConfig:
    """BESA options.  Defaults are the paper's row-wise setting (beta 5, Prodigy lr 1, d_coef 5, 1 epoch).

    ``exact_budget``: ``off`` (the reference: soft penalty, realised lands near S), ``layer`` (every layer
    hits its target exactly) or ``model`` (every block, hence the whole model, hits S exactly while the
    layers inside a block keep their learned sparsities).  ``freeze``: no learning, every row at its
    layer's target (reproduces Wanda's masks; with n:m, Wanda's n:m masks).  ``quant_lr``: Adam step for
    the clipping logits.  ``nm_init_scale``: n:m only, initial logit per unit of summed within-group
    rank (:func:`pruning.methods.besa.nm.init_logits`); larger = the learning starts more committed to Wanda's
    patterns.
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
    nm_init_scale: float = 1.0
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
        if not self.nm_init_scale > 0:
            raise UserError(f"--nm-init-scale must be > 0, got {self.nm_init_scale}")
        if self.candidates < 2:
            raise UserError(f"--candidates must be >= 2, got {self.candidates}")


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


def kept_per_group(pattern: tuple[int, int]) -> int:
    """Weights KEPT in every group of ``pattern[1]`` for the driver's ``BlockJob.pattern``.

    The one place that reads the pattern's first number: ``(n, m)`` = n of every m KEPT
    (``BlockJob``'s convention).
    """
    return int(pattern[0])


@dataclass
class _Layer:
    """Per-linear state during one block: frozen weight, its ranking, learnable logits.

    Unstructured: ``rank``/``index``/``index_max`` and logits ``(R or 1, D)`` over the candidate sparsities.
    n:m (``patterns`` set): logits ``(P, R, G)`` over each group's keep patterns, ``init_choice`` the
    initial (Wanda) pattern of every group.
    """

    name: str
    W: torch.Tensor  # (R, C) frozen weight on the device
    target: float  # this layer's target sparsity
    logits: torch.Tensor  # learnable; shape above
    rank: torch.Tensor | None = None  # (R, C) sorted position of each entry (ascending score), core.compact (int16)
    index: torch.Tensor | None = None  # (R, C) index into the cumulative coefficients (soft mask), core.compact (uint8)
    index_max: int = 0  # max(index): the cumulative coefficients the soft mask can reach
    patterns: torch.Tensor | None = None  # n:m: bool (P, M) keep patterns
    init_choice: torch.Tensor | None = None  # n:m: (R, G) int64 argmax of the initial logits
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
    makes_targets = True  # targets=None: the statistics pass records the dense outputs (driver skips its pass)
    handles_quant = True

    def __init__(self, config: BesaConfig | None = None, **options: Any) -> None:
        self.config = config if config is not None else BesaConfig(**options)

    @classmethod
    def add_arguments(cls, parser) -> None:
        g = parser
        g.add_argument(
            "--besa-granularity", choices=GRANULARITIES, default="row", help="BESA: one learnable logit vector per output row (paper default) or per layer"
        )
        g.add_argument(
            "--no-smoothing",
            action="store_true",
            help="BESA: coefficients softmax(logits) instead of softmax(sigmoid(logits)); smoothing confines every row to about [0.376, 0.624] sparsity",
        )
        g.add_argument("--d-coef", type=float, default=None, help="BESA: Prodigy d_coef (default 5; with --pattern N:M default 1)")
        g.add_argument("--beta", type=float, default=5.0, help="BESA: weight of the sparsity penalty (default 5)")
        g.add_argument("--epochs", type=int, default=None, help="BESA: epochs over the calibration set (default 1; with --pattern N:M default 3)")
        g.add_argument("--lr", type=float, default=None, help="BESA: Prodigy lr (default 1; with --pattern N:M default 0.2)")
        g.add_argument(
            "--exact-budget",
            choices=EXACT_BUDGETS,
            default="off",
            help="BESA: off = soft budget (reference); layer = every layer hits the target exactly; model = every block and so the whole model hits it exactly",
        )
        g.add_argument("--freeze", action="store_true", help="BESA: no learning, every row at the uniform target (equals Wanda; for checks)")
        g.add_argument(
            "--nm-init-scale",
            type=float,
            default=1.0,
            help="BESA + --pattern: initial logit per unit of summed within-group score rank (argmax = Wanda's n:m choice; default 1)",
        )
        g.add_argument("--quant-lr", type=float, default=5e-2, help="BESA + --wbits: Adam step for the learnable clipping logits (default 0.05)")

    @classmethod
    def from_args(cls, args) -> "Besa":
        # Learned n:m collapses with the paper's unstructured optimiser settings on SmolLM2
        # (ppl 1.1e8 at d_coef 5, 1 epoch, lr 1; docs/results.md, learned n:m), so an n:m run gets the
        # settings that were measured to work unless the user chose them.
        defaults = NM_OPTIMISER_DEFAULTS if getattr(args, "pattern", None) else UNSTRUCTURED_OPTIMISER_DEFAULTS

        def pick(name: str):
            value = getattr(args, name, None)
            return defaults[name] if value is None else value

        return cls(
            BesaConfig(
                granularity=getattr(args, "besa_granularity", "row"),
                smoothing=not getattr(args, "no_smoothing", False),
                d_coef=pick("d_coef"),
                beta=getattr(args, "beta", 5.0),
                epochs=pick("epochs"),
                lr=pick("lr"),
                exact_budget=getattr(args, "exact_budget", "off"),
                freeze=getattr(args, "freeze", False),
                quant_lr=getattr(args, "quant_lr", 5e-2),
                nm_init_scale=getattr(args, "nm_init_scale", 1.0),
            )
        )

    # ------------------------------------------------------------------ one block
    def prune_block(self, block: nn.Module, inputs: BlockInputs, targets: torch.Tensor | None, job: BlockJob) -> BlockResult:
        cfg = self.config
        t0 = time.perf_counter()
        names = [n for n in LINEAR_NAMES if n in job.sparsity]
        mods = dict(block.named_modules())
        nm_keep = self._check(job, names, mods)
        spec = QuantSpec(int(job.wbits), int(job.group_size)) if job.wbits else None
        dev = job.device

        # Wanda's statistic, computed by the same code as --method wanda (frozen BESA == Wanda bit for bit).
        # Without driver targets (library use) the same dense pass yields them: the dense block's outputs.
        learn = not cfg.freeze and cfg.epochs > 0
        own_targets = torch.empty_like(inputs.hidden) if learn and targets is None else None
        norm_stat = InputNormStat()
        on_output = None if own_targets is None else (lambda j, out: own_targets[j].copy_(out[0]))
        accumulate_inputs(block, inputs, job, tuple(names), norm_stat.update, on_output)
        if own_targets is not None:
            targets = own_targets
        layers = [self._new_layer(n, mods[n].weight.detach(), norm_stat.stat[n], job, nm_keep, spec) for n in names]
        D = cfg.candidates
        cands = core.candidates(D).to(dev)
        S = sum(L.target * L.numel for L in layers) / sum(L.numel for L in layers)

        losses: list[float] = []
        d_final = None
        if learn:
            losses, d_final = self._learn(block, inputs, targets, job, layers, cands, S, spec)

        with torch.no_grad():
            unstructured = [L for L in layers if L.patterns is None]
            sp = dict(zip([L.name for L in unstructured], _layer_sparsities(unstructured, cands, cfg.smoothing)))
            counts = finalise_counts(unstructured, [sp[L.name][1] for L in unstructured], cfg.exact_budget, cfg.freeze)
            keep = {L.name: core.hard_keep(L.rank, k).cpu() for L, k in zip(unstructured, counts)}
            keep.update({L.name: nm.hard_keep(L.logits, L.patterns).cpu() for L in layers if L.patterns is not None})
            keep = {n: keep[n] for n in names}

        record, tensors = self._record(job, layers, sp, keep, losses, d_final, S, time.perf_counter() - t0)
        if spec is not None:
            for L in layers:
                tensors[f"{L.name}.{UPPER_LOGIT}"] = L.upper.detach().float().cpu()
                tensors[f"{L.name}.{LOWER_LOGIT}"] = L.lower.detach().float().cpu()
        if cfg.verbose:
            from tqdm import tqdm

            tqdm.write(self._log_line(job, record), file=sys.stderr)  # does not break the driver's bar
        return BlockResult(keep=keep, record=record, tensors=tensors)

    def _check(self, job: BlockJob, names: list[str], mods: dict) -> int | None:
        """Validate the job before any slow work; return the n:m weights KEPT per group (None: unstructured)."""
        for n in names:
            if not 0.0 < job.sparsity[n] < 1.0:
                raise UserError(f"sparsity must be in (0, 1), got {job.sparsity[n]} for {job.prefix}{n}")
        if job.wbits:
            spec = QuantSpec(int(job.wbits), int(job.group_size))
            for n in names:
                spec.check(f"{job.prefix}{n}", mods[n].weight.shape[1])
        if job.pattern is None:
            return None
        keep, m = kept_per_group(job.pattern), int(job.pattern[1])
        if nm.pattern_count(m, keep) > nm.MAX_PATTERNS:
            raise UserError(
                f"besa n:m: {keep} kept of {m} has {nm.pattern_count(m, keep)} keep patterns per group "
                f"(at most {nm.MAX_PATTERNS} are learnable); use a smaller group, e.g. 2:4 or 4:8"
            )
        for n in names:
            if mods[n].weight.shape[1] % m:
                raise UserError(f"besa n:m: in-features of {job.prefix}{n} ({mods[n].weight.shape[1]}) are not a multiple of {m}")
        return keep

    def _new_layer(self, name: str, W: torch.Tensor, stat: torch.Tensor, job: BlockJob, nm_keep: int | None, spec) -> _Layer:
        """Score ``|W| sqrt(stat)``, rank it, and create the learnable logits (see :class:`_Layer`)."""
        cfg = self.config
        dev = job.device
        R, C = W.shape
        if nm_keep is not None:
            m = int(job.pattern[1])
            pats = nm.keep_patterns(m, nm_keep).to(dev)
            logits = nm.init_logits(nm.group_ranks(core.wanda_score(W, stat), m), pats, cfg.nm_init_scale)
            L = _Layer(
                name=name, W=W, target=float(job.sparsity[name]), logits=logits.requires_grad_(True), patterns=pats, init_choice=nm.choice(logits.detach())
            )
        else:
            D = cfg.candidates
            # rank and index live for the whole block: compact dtypes, 3 bytes per weight instead of 16
            rank, index, index_max = core.layer_ranking(W, stat, D)
            L = _Layer(
                name=name,
                W=W,
                target=float(job.sparsity[name]),
                rank=rank,
                index=index,
                index_max=index_max,
                logits=torch.zeros(R if cfg.granularity == "row" else 1, D, device=dev, requires_grad=True),
            )
        if spec is not None:
            L.upper = torch.full((R,), LWC_INIT, device=dev, requires_grad=True)
            L.lower = torch.full((R,), LWC_INIT, device=dev, requires_grad=True)
        return L

    @staticmethod
    def _step_weight(L: _Layer, p: torch.Tensor | None, s: torch.Tensor | None, spec) -> torch.Tensor:
        """This step's straight-through masked (and fake-quantized) weight of one layer."""
        if L.patterns is not None:
            hard = nm.hard_keep(L.logits.detach(), L.patterns)
            W = nm.masked_weight(L.W.float(), hard, nm.probabilities(L.logits), L.patterns)
        else:
            hard = core.hard_keep(L.rank, core.row_counts(s, L.shape[1], L.shape[0]))
            W = core.masked_weight(L.W.float(), hard, p, L.index, L.index_max)  # == W * ste_mask(hard, soft)
        if spec is not None:
            up, lo = torch.sigmoid(L.upper), torch.sigmoid(L.lower)
            scale, zero = group_params(L.W.float() * hard, spec, up, lo)
            W = fake_quant(W, scale, zero, spec) * hard
        return W.to(L.W.dtype)

    def _learn(self, block, inputs, targets, job, layers, cands, S, spec):
        """One reconstruction run: logits (Prodigy) and clipping logits (Adam) learn, weights stay frozen.

        Unstructured layers pay the soft budget penalty; n:m layers need none (exact by construction).
        """
        from prodigyopt import Prodigy

        cfg = self.config
        dev = job.device
        opt = Prodigy([L.logits for L in layers], lr=cfg.lr, d_coef=cfg.d_coef, weight_decay=0.0)
        qopt = None
        if spec is not None:
            qopt = torch.optim.Adam([t for L in layers for t in (L.upper, L.lower)], lr=cfg.quant_lr)
        # fp16 gradients through a block can underflow: scale the loss (bf16/fp32 need no scaler).
        scaler = torch.amp.GradScaler(dev.type, enabled=(dev.type == "cuda" and job.autocast_dtype == torch.float16))
        unstructured = [L for L in layers if L.patterns is None]
        losses: list[float] = []
        with _frozen(block):
            for _epoch in range(cfg.epochs):
                for i in range(len(inputs)):
                    sp = dict(zip([L.name for L in unstructured], _layer_sparsities(unstructured, cands, cfg.smoothing)))
                    weights = {f"{L.name}.weight": self._step_weight(L, *sp.get(L.name, (None, None))[:2], spec) for L in layers}
                    x = inputs.hidden[i : i + 1].to(dev)
                    with autocast_context(dev, job.autocast_dtype):
                        out = torch.func.functional_call(block, weights, (x,), dict(inputs.kwargs))
                    out = out[0] if isinstance(out, (tuple, list)) else out
                    rec = core.reconstruction_loss(out, targets[i : i + 1].to(dev))
                    loss = rec
                    if unstructured:
                        bs = block_sparsity(unstructured, [sp[L.name][2] for L in unstructured])
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
            "loss_mean_last_quarter": (sum(losses[-max(1, len(losses) // 4) :]) / max(1, len(losses) // 4)) if losses else None,
            "prodigy_d": d_final,
            "seconds": seconds,
            "layers": {},
        }
        n_total = sum(L.numel for L in layers)
        exp_block = real_block = 0.0
        if any(L.patterns is not None for L in layers):
            record["pattern"] = f"{int(job.pattern[0])}:{int(job.pattern[1])}"
            record["nm_init_scale"] = self.config.nm_init_scale
        for L in layers:
            realised = 1.0 - float(keep[L.name].float().mean())
            if L.patterns is not None:  # n:m: every group keeps exactly K; report how far learning moved
                expected = L.target
                with torch.no_grad():
                    choice = nm.choice(L.logits)
                    top = nm.probabilities(L.logits.float()).amax(dim=0)
                entry = {"changed_groups": float((choice != L.init_choice).float().mean()), "mean_top_probability": float(top.mean())}
            else:
                _, s, ls = sp[L.name]
                expected = L.target if self.config.freeze else float(ls)
                s_rows = s.detach().float().cpu()
                entry = {
                    "row_expected_min": float(s_rows.min()),
                    "row_expected_max": float(s_rows.max()),
                    "row_expected_std": float(s_rows.std()) if s_rows.numel() > 1 else 0.0,
                }
            record["layers"][L.name] = {"target": L.target, "expected": expected, "realised": realised, **entry}
            exp_block += expected * L.numel / n_total
            real_block += realised * L.numel / n_total
        record["expected"] = exp_block
        record["realised"] = real_block
        return record, {}

    @staticmethod
    def _log_line(job, record) -> str:
        short = {n: n.split(".")[-1].replace("_proj", "") for n in record["layers"]}
        per = " ".join(f"{short[n]} {v['expected']:.3f}/{v['realised']:.3f}" for n, v in record["layers"].items())
        if "pattern" in record:  # n:m: the share of groups whose pattern differs from Wanda's
            per = " ".join(f"{short[n]} {v['changed_groups']:.3f}" for n, v in record["layers"].items())
            per = f"groups changed vs Wanda {per}"
        else:
            per = f"expected/realised {per}"
        loss = ""
        if record["loss_first"] is not None:
            loss = f" | loss {record['loss_first']:.4g} -> {record['loss_mean_last_quarter']:.4g}"
        return (
            f"besa block {job.index}: sparsity expected {record['expected']:.4f} realised {record['realised']:.4f} "
            f"(target {record['target']:.4f}) | {per}{loss} | {record['seconds']:.1f}s"
        )
