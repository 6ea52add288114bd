"""Block driver, stage 3: the block loop, :func:`prune_model` (the lifecycle is described in
:mod:`pruning.driver`)."""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from besa_common.errors import UserError
from pruning.driver.capture import capture_inputs, dense_prepass, forward_block
from pruning.driver.checkpoint import Checkpoint, fingerprint
from pruning.driver.config import DriverConfig, layer_targets, validate_run
from pruning.driver.rundir import write_run
from pruning.methods.base import LINEAR_NAMES, BlockInputs, BlockJob, BlockResult, PruningMethod
from pruning.models import decoder_layers
from pruning.quant import quantize_block
from pruning.weight_update import GramCollector, WeightUpdateConfig, update_block


def _check_result(res: BlockResult, block: nn.Module, job: BlockJob, method: str) -> None:
    if not isinstance(res, BlockResult) or not res.keep:
        raise RuntimeError(f"method {method} returned no keep masks for block {job.index}")
    for name, k in res.keep.items():
        if name not in LINEAR_NAMES:
            raise RuntimeError(f"method {method} returned a mask for unknown layer {name!r}")
        w = block.get_submodule(name).weight
        if tuple(k.shape) != tuple(w.shape) or k.dtype != torch.bool:
            raise RuntimeError(f"method {method}: mask {job.prefix}{name} is {k.dtype} {tuple(k.shape)}, expected bool {tuple(w.shape)}")
    for name, w in res.weights.items():
        if name not in res.keep or tuple(w.shape) != tuple(block.get_submodule(name).weight.shape):
            raise RuntimeError(f"method {method}: updated weight {name!r} has no mask or the wrong shape")


def _update_weights(res: BlockResult, block: nn.Module, inputs: BlockInputs, job: BlockJob, cfg: WeightUpdateConfig) -> None:
    """``--weight-update``: replace ``res.weights`` by the update with ``res.keep`` fixed (the block
    still holds its dense weights); per-layer errors go to the allocation record as ``update_*``."""
    weights, record, keep = update_block(block, inputs, job, {n: k.detach().cpu().bool() for n, k in res.keep.items()}, cfg)
    res.weights, res.keep = weights, keep  # keep: the method's masks unless --admm-reselect re-chose them
    layers = res.record.setdefault("layers", {})
    for name, rec in record.items():
        layers.setdefault(name, {}).update({f"update_{k}": v for k, v in rec.items()})


@torch.no_grad()
def _finalise_block(block: nn.Module, keep: dict[str, torch.Tensor], weights: dict[str, torch.Tensor]) -> None:
    """Copy updated weights in, then ``W *= keep``."""
    for name, k in keep.items():
        lin = block.get_submodule(name)
        if name in weights:
            lin.weight.data.copy_(weights[name].to(lin.weight.device, lin.weight.dtype))
        lin.weight.data.mul_(k.to(lin.weight.device).to(lin.weight.dtype))


@dataclass
class _Run:
    """One prune_model call: settings, the activation buffers, and what the finished blocks produced."""

    method: PruningMethod
    config: DriverConfig
    device: torch.device
    autocast_dtype: torch.dtype | None
    ckpt: Checkpoint
    targets: dict[str, float]  # HF module name -> target sparsity
    kwargs: dict
    hidden: torch.Tensor  # pruned-propagated inputs, updated in place
    needs_inputs: bool
    use_dense: bool
    dense: torch.Tensor | None = None  # the dense model's own trajectory (--target dense)
    scratch: torch.Tensor | None = None  # targets
    keep_all: dict[str, torch.Tensor] = field(default_factory=dict)
    records: dict[int, dict] = field(default_factory=dict)
    qparams_all: dict[str, torch.Tensor] = field(default_factory=dict)
    updated_all: dict[str, tuple[int, str]] = field(default_factory=dict)  # HF name -> (block, local name)

    def job(self, i: int) -> BlockJob:
        prefix = f"model.layers.{i}."
        c = self.config
        return BlockJob(
            index=i,
            prefix=prefix,
            sparsity={n: self.targets[prefix + n] for n in LINEAR_NAMES},
            pattern=c.pattern,
            device=self.device,
            autocast_dtype=self.autocast_dtype,
            seed=c.seed,
            wbits=c.wbits,
            group_size=c.group_size,
            # --weight-update: collect XᵀX in the method's own dense pass (no second pass over the block)
            input_observer=GramCollector() if c.weight_update.mode != "none" else None,
        )


def _prune_block(run: _Run, block: nn.Module, job: BlockJob):
    """Targets, ``method.prune_block``, the optional weight update, masks in, quantization, checkpoint.
    Returns ``(keep, updates, qparams, record)``."""
    c = run.config
    targets = None
    if run.use_dense:
        targets = run.scratch
    elif run.method.needs_targets and not run.method.makes_targets:
        forward_block(block, run.hidden, run.scratch, run.kwargs, run.device, run.autocast_dtype)
        targets = run.scratch
    # else (BESA): targets=None, the method takes them from its own statistics pass, bit for bit the
    # same outputs (same block, inputs and autocast), one dense forward per block saved.
    # Seed per block so a resumed run draws the same numbers as an uninterrupted one.
    torch.manual_seed(c.seed * 1_000_003 + job.index)
    inputs = BlockInputs(hidden=run.hidden, kwargs=run.kwargs)
    res = run.method.prune_block(block, inputs, targets, job)
    _check_result(res, block, job, run.method.name)
    if c.weight_update.mode != "none":
        _update_weights(res, block, inputs, job, c.weight_update)
    keep = {n: k.detach().cpu().bool() for n, k in res.keep.items()}
    _finalise_block(block, keep, res.weights)
    # clone: on CPU .float().cpu() aliases the weight, which quantization overwrites next
    updates = {n: block.get_submodule(n).weight.detach().float().cpu().clone() for n in res.weights}
    qparams, finals = {}, {}
    if c.wbits is not None:
        qparams = quantize_block(block, keep, job, res.tensors)
        finals = {n: block.get_submodule(n).weight.detach().float().cpu() for n in keep}
    record = json.loads(json.dumps(res.record, default=float))
    run.ckpt.save(job.index, keep, updates, finals, qparams, record)
    return keep, updates, qparams, record


def _run_block(run: _Run, i: int, block: nn.Module) -> None:
    """Block ``i``: restore it from the checkpoint or prune it, then propagate its outputs."""
    job = run.job(i)
    block.to(run.device)
    if run.use_dense:  # the dense block on the dense trajectory: targets, and the next dense inputs
        forward_block(block, run.dense, run.scratch, run.kwargs, run.device, run.autocast_dtype)
    if i < run.ckpt.done:
        keep, updates, finals, qparams, record = run.ckpt.load(i)
        _finalise_block(block, keep, finals or updates)  # finals are already masked and quantized
    else:
        keep, updates, qparams, record = _prune_block(run, block, job)
    if run.use_dense:
        run.dense, run.scratch = run.scratch, run.dense  # targets of block i are the dense inputs of block i + 1
    if run.needs_inputs:
        forward_block(block, run.hidden, run.hidden, run.kwargs, run.device, run.autocast_dtype)  # pruned propagation
    if run.device.type != "cpu":
        block.to("cpu")
    run.keep_all.update({job.prefix + n: k for n, k in keep.items()})
    run.qparams_all.update({job.prefix + n: q for n, q in qparams.items()})
    run.updated_all.update({job.prefix + n: (i, n) for n in updates})
    run.records[i] = record


def _start(model, method: PruningMethod, calib: torch.Tensor, config: DriverConfig, ckpt: Checkpoint, layers, device, autocast_dtype) -> _Run:
    """Capture block 0's inputs, allocate the buffers, plan per-layer targets (OWL's pre-pass)."""
    buffer_device = torch.device("cpu") if config.offload_acts else device
    needs_inputs = getattr(method, "needs_inputs", True) or method.needs_targets
    if needs_inputs:
        inputs = capture_inputs(model, calib, device, buffer_device)
    else:  # data-free method (magnitude): no capture, no propagation
        inputs = BlockInputs(hidden=torch.empty((0, calib.shape[1], model.config.hidden_size)), kwargs={})
    use_dense = method.needs_targets and config.target == "dense"
    targets = layer_targets(config, len(layers))
    if getattr(method, "needs_prepass", False):  # e.g. OWL: allocation from the dense model first
        dense_prepass(method, layers, inputs, device, config, autocast_dtype)
        targets = {k: float(v) for k, v in method.plan_sparsity(targets).items()}
        bad = {k: v for k, v in targets.items() if not 0.0 <= v < 1.0}
        if bad:
            raise UserError(f"{method.name} planned an impossible sparsity {next(iter(bad.items()))}; lower --sparsity or the method's spread")
    hidden = inputs.hidden
    return _Run(
        method,
        config,
        device,
        autocast_dtype,
        ckpt,
        targets,
        inputs.kwargs,
        hidden,
        needs_inputs,
        use_dense,
        dense=hidden.clone() if use_dense else None,
        scratch=torch.empty_like(hidden) if use_dense or (method.needs_targets and not method.makes_targets) else None,
    )


def prune_model(
    model,
    method: PruningMethod,
    calib: torch.Tensor,
    out_dir: str | Path,
    config: DriverConfig,
    meta: Mapping[str, Any] | None = None,
    on_block_done: Callable[[int], None] | None = None,
) -> dict:
    """Prune ``model`` in place, block by block; write the run directory; return the manifest.

    ``calib``: LongTensor ``(n, T)`` calibration windows.  ``meta``: JSON-able facts for the
    manifest (``model``, ``calibration`` ...); ``meta["model"]`` also enters the resume fingerprint.
    ``on_block_done(i)`` is called after block ``i`` is checkpointed (tests inject interruptions).
    """
    from tqdm import tqdm

    t_start = time.time()
    meta = dict(meta or {})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    layers = decoder_layers(model)
    device, autocast_dtype = validate_run(model, config, calib, len(layers))
    model.eval()
    if device.type != "cpu":
        model.to("cpu")  # one block at a time visits the accelerator
    ckpt = Checkpoint(out / "checkpoint", fingerprint(method, config, calib, meta.get("model"), device))
    if ckpt.done:
        print(f"[besa prune] resuming at block {ckpt.done} of {len(layers)} from {ckpt.root}", file=sys.stderr)
    run = _start(model, method, calib, config, ckpt, layers, device, autocast_dtype)
    for i in tqdm(range(len(layers)), desc=f"prune {method.name}", unit="block", disable=not config.progress, file=sys.stderr):
        _run_block(run, i, layers[i])
        if on_block_done is not None:
            on_block_done(i)
    manifest = write_run(
        out, model, method, config, meta, run.keep_all, run.records, run.qparams_all, run.targets, time.time() - t_start, run.updated_all, ckpt
    )
    shutil.rmtree(ckpt.root, ignore_errors=True)
    return manifest
