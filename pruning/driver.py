"""The one block driver: capture block-0 inputs, then prune decoder blocks in order, sequentially.

Every method runs through :func:`prune_model`; the lifecycle is the one in
:mod:`pruning.methods.base`:

1. **Capture**: run the embedding on each calibration window and stop at decoder block 0, keeping
   its hidden states ``(n, T, C)`` and EVERY keyword argument it receives (attention mask,
   position ids, rotary ``position_embeddings`` in transformers 5.x, cache flags).
2. **Per block** ``i`` (only this block on the compute device; with CUDA the model stays on CPU):
   targets (dense block on the pruned-propagated inputs, or on the dense trajectory with
   ``target="dense"``) when the method ``needs_targets``; ``method.prune_block``; copy its updated
   weights (if any), multiply the keep masks in, quantize when ``wbits`` is set; checkpoint; run
   the pruned block to get block ``i + 1``'s inputs (pruned propagation).
3. **Write** ``DIR/weights.safetensors`` when any weights were updated (the changed linears' kept
   values before quantization, tied to the masks by their SHA-256; ``besa_common.weights``), then
   ``DIR/masks.safetensors``, ``DIR/manifest.json``, ``DIR/allocation.json`` (and
   ``DIR/quant.safetensors``), then remove ``DIR/checkpoint/``.

Activation buffers (``(n, T, C)`` fp32, on the device, or on CPU with ``offload_acts``): the
inputs (updated in place, window by window), the targets, and the dense trajectory: at most three.

Resume: each finished block's masks (plus the weights the method updated, before quantization,
and with ``wbits`` the final quantized weights) go to ``DIR/checkpoint/block-NNN.safetensors``.  A
rerun with the same settings (checked by a fingerprint) re-applies finished blocks and recomputes
their outputs with the same
operations, so it continues at the first unfinished block with bit-identical masks.  Activations
are recomputed rather than stored: a forward pass is cheap next to pruning, and
``n × T × C`` fp32 per block would be gigabytes at the paper's settings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import platform
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from pruning.methods.base import LINEAR_NAMES, BlockInputs, BlockJob, BlockResult, PruningMethod
from besa_common.digest import json_digest
from besa_common.errors import UserError
from pruning.weight_update import WeightUpdateConfig
from besa_common.fileio import atomic_write_bytes, atomic_write_json

TARGET_MODES = ("pruned", "dense")
DTYPES = {"float32": None, "float16": torch.float16, "bfloat16": torch.bfloat16}
CHECKPOINT_VERSION = 2  # 2: pre-quantization updated weights ("update.") stored apart from final ones
# Manifest / masks-meta ``pattern`` "N:M" = at most N KEPT of every M consecutive input weights.
# Manifests without this key (version 1) meant N PRUNED of M.
PATTERN_CONVENTION = "n_kept_of_m"


@dataclass(frozen=True)
class DriverConfig:
    """How to run the block loop.

    ``sparsity``: target fraction PRUNED per linear, in [0, 1); ``layer_sparsity`` overrides it per
    HF module name (``model.layers.3.mlp.up_proj``), e.g. OWL's allocation.  ``pattern``: (n, m) =
    at most n of every m consecutive input columns KEPT (N:M convention; sparsity
    1 - n/m), or None (unstructured).  ``dtype``: compute
    dtype; float16/bfloat16 = autocast (weights and buffers stay fp32).  ``target``: ``pruned``
    (dense block on the pruned-propagated inputs, the reference default) or ``dense`` (the dense
    model's own trajectory; a third buffer).
    """

    sparsity: float
    pattern: tuple[int, int] | None = None
    layer_sparsity: Mapping[str, float] = field(default_factory=dict)
    device: str = "auto"
    dtype: str = "float32"
    target: str = "pruned"
    offload_acts: bool = False
    wbits: int | None = None
    group_size: int = 128
    seed: int = 0
    progress: bool = True
    weight_update: WeightUpdateConfig = WeightUpdateConfig()

    def __post_init__(self) -> None:
        if not 0.0 <= self.sparsity < 1.0:
            raise UserError(f"sparsity must be in [0, 1), got {self.sparsity}")
        for name, s in self.layer_sparsity.items():
            if not 0.0 <= float(s) < 1.0:
                raise UserError(f"layer sparsity for {name} must be in [0, 1), got {s}")
        if self.pattern is not None:
            n, m = self.pattern
            if not (0 < n < m):
                raise UserError(f"pattern n:m needs 0 < n < m, got {n}:{m}")
        if self.target not in TARGET_MODES:
            raise UserError(f"target must be one of {', '.join(TARGET_MODES)}, got {self.target!r}")
        if self.dtype not in DTYPES:
            raise UserError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu.  ``cuda`` without a GPU is a UserError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    if name not in ("cpu", "cuda"):
        raise UserError(f"device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def autocast_context(device: torch.device, dtype: torch.dtype | None):
    """fp16/bf16 autocast on ``device`` or a no-op for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# --------------------------------------------------------------------------------------------
# Capture and propagation
# --------------------------------------------------------------------------------------------


class _Captured(Exception):
    """Raised by the stand-in for block 0 once it has recorded its inputs."""


class _Catcher(nn.Module):
    def __init__(self, store: dict):
        super().__init__()
        self.store = store

    def forward(self, hidden_states, *args, **kwargs):
        if args:  # every current LLaMA-family model passes keywords; positional ones would be lost
            raise RuntimeError(f"decoder block received {len(args)} positional arguments; the driver expects keywords")
        self.store["hidden"] = hidden_states
        self.store["kwargs"] = kwargs
        raise _Captured


@torch.no_grad()
def capture_inputs(model, calib: torch.Tensor, device: torch.device, buffer_device: torch.device) -> BlockInputs:
    """Hidden states ``(n, T, C)`` fp32 (on ``buffer_device``) and the kwargs of decoder block 0.

    Only the embedding and rotary modules visit ``device``; the kwargs (shared by all windows,
    batch 1) stay there.
    """
    from pruning.models import decoder_layers

    layers = decoder_layers(model)
    inner = model.model
    n, T = calib.shape
    hidden = torch.empty((n, T, model.config.hidden_size), dtype=torch.float32, device=buffer_device)
    store: dict = {}
    first = layers[0]
    layers[0] = _Catcher(store)
    moved = [m for m in (getattr(inner, "embed_tokens", None), getattr(inner, "rotary_emb", None)) if m is not None]
    kwargs: dict[str, Any] = {}
    try:
        for m in moved:
            m.to(device)
        for j in range(n):
            try:
                inner(input_ids=calib[j : j + 1].to(device), use_cache=False)
            except _Captured:
                pass
            else:
                raise RuntimeError("decoder block 0 was never called")
            hidden[j] = store["hidden"][0].to(device=buffer_device, dtype=torch.float32)
            if j == 0:
                kwargs = dict(store["kwargs"])
    finally:
        layers[0] = first
        if device.type != "cpu":
            for m in moved:
                m.to("cpu")
    return BlockInputs(hidden=hidden, kwargs=kwargs)


def _block_output(out) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


@torch.no_grad()
def forward_block(block: nn.Module, src: torch.Tensor, dst: torch.Tensor, kwargs: dict, device: torch.device, autocast_dtype) -> None:
    """``dst[j] = block(src[j])`` window by window (``dst`` may be ``src``: in place)."""
    for j in range(src.shape[0]):
        with autocast_context(device, autocast_dtype):
            out = _block_output(block(src[j : j + 1].to(device), **kwargs))  # (1, T, C)
        dst[j] = out[0].to(device=dst.device, dtype=dst.dtype)


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------


def _fingerprint(method: PruningMethod, config: DriverConfig, calib: torch.Tensor, model_id: Any, device: torch.device) -> str:
    opts = getattr(method, "config", None)
    opts = dataclasses.asdict(opts) if dataclasses.is_dataclass(opts) else repr(opts)
    cfg = dataclasses.asdict(config)
    cfg.pop("progress")
    cfg.pop("offload_acts")  # where buffers live does not change any number
    cfg.pop("device")
    return json_digest(  # sha256 of the canonical JSON (besa_common.digest): checkpoints from before resume
        {
            "version": CHECKPOINT_VERSION,
            "method": method.name,
            "options": opts,
            "config": cfg,
            "device": device.type,
            "model": model_id,
            "calib": hashlib.sha256(calib.cpu().numpy().tobytes()).hexdigest(),
            "shape": list(calib.shape),
        }
    )


class _Checkpoint:
    """``DIR/checkpoint/``: ``state.json`` (fingerprint, blocks done) + one safetensors per block."""

    def __init__(self, root: Path, fingerprint: str):
        self.root = root
        self.fingerprint = fingerprint
        self.done = 0
        state = root / "state.json"
        if state.is_file():
            try:
                st = json.loads(state.read_text())
            except ValueError:
                raise UserError(f"{state} is corrupt; delete {root} to start over") from None
            if st.get("fingerprint") != fingerprint:
                raise UserError(f"{root} holds a checkpoint of a different run (model, method, options or calibration differ); delete it or use another --out")
            self.done = int(st.get("done", 0))

    def path(self, i: int) -> Path:
        return self.root / f"block-{i:03d}.safetensors"

    def save(self, i: int, keep: dict[str, torch.Tensor], updates: dict[str, torch.Tensor], finals: dict[str, torch.Tensor], qparams: dict[str, torch.Tensor], record: dict) -> None:
        """``updates``: weights the method changed, after masking, before quantization (what
        ``DIR/weights.safetensors`` stores); ``finals``: every linear's final weights when quantized."""
        from safetensors.torch import save

        tensors = {f"keep.{n}": k.to(torch.uint8).contiguous() for n, k in keep.items()}
        tensors.update({f"update.{n}": w.detach().cpu().contiguous() for n, w in updates.items()})
        tensors.update({f"weight.{n}": w.detach().cpu().contiguous() for n, w in finals.items()})
        tensors.update({f"quant.{n}": q.detach().cpu().contiguous() for n, q in qparams.items()})
        atomic_write_bytes(self.path(i), save(tensors, metadata={"record": json.dumps(record, default=float)}))
        self.done = i + 1
        atomic_write_json(self.root / "state.json", {"fingerprint": self.fingerprint, "done": self.done})

    def load(self, i: int):
        from safetensors import safe_open

        keep, updates, finals, qparams = {}, {}, {}, {}
        try:
            with safe_open(str(self.path(i)), framework="pt") as fh:
                record = json.loads((fh.metadata() or {}).get("record", "{}"))
                for key in fh.keys():
                    kind, name = key.split(".", 1)
                    t = fh.get_tensor(key)
                    if kind == "keep":
                        keep[name] = t.bool()
                    elif kind == "update":
                        updates[name] = t
                    elif kind == "weight":
                        finals[name] = t
                    else:
                        qparams[name] = t
        except UserError:
            raise
        except Exception as exc:
            raise UserError(f"checkpoint {self.path(i)} is unreadable ({type(exc).__name__}); delete {self.root} to start over") from None
        return keep, updates, finals, qparams, record

    def update_value(self, i: int, name: str):
        """Block ``i``'s saved pre-quantization weight of local linear ``name`` as a numpy array."""
        from safetensors import safe_open

        with safe_open(str(self.path(i)), framework="numpy") as fh:
            return fh.get_tensor(f"update.{name}")


# --------------------------------------------------------------------------------------------
# The block loop
# --------------------------------------------------------------------------------------------


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
    from pruning.weight_update import update_block

    weights, record = update_block(block, inputs, job, {n: k.detach().cpu().bool() for n, k in res.keep.items()}, cfg)
    res.weights = weights
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


def layer_targets(config: DriverConfig, n_blocks: int) -> dict[str, float]:
    """HF module name -> target sparsity for every prunable linear (``layer_sparsity`` or uniform)."""
    return {
        f"model.layers.{i}.{n}": float(config.layer_sparsity.get(f"model.layers.{i}.{n}", config.sparsity))
        for i in range(n_blocks)
        for n in LINEAR_NAMES
    }


@torch.no_grad()
def _prepass(method: PruningMethod, layers, inputs: BlockInputs, device, config: DriverConfig, autocast_dtype) -> None:
    """Show every block of the DENSE model to ``method.observe_block`` (dense propagation, one buffer)."""
    from tqdm import tqdm

    hidden = inputs.hidden.clone()
    for i in tqdm(range(len(layers)), desc=f"{method.name} pre-pass", unit="block", disable=not config.progress, file=sys.stderr):
        block = layers[i]
        block.to(device)
        job = BlockJob(index=i, prefix=f"model.layers.{i}.", sparsity={}, pattern=config.pattern, device=device,
                       autocast_dtype=autocast_dtype, seed=config.seed, wbits=config.wbits, group_size=config.group_size)
        method.observe_block(block, BlockInputs(hidden=hidden, kwargs=inputs.kwargs), job)
        forward_block(block, hidden, hidden, inputs.kwargs, device, autocast_dtype)
        if device.type != "cpu":
            block.to("cpu")
    del hidden


def check_group_size(model, group_size: int) -> None:
    """Quantization groups must tile every linear's in-features exactly."""
    from pruning.models import linear_layers

    if group_size < 1:
        raise UserError(f"--group-size must be positive, got {group_size}")
    for name, lin in linear_layers(model).items():
        if lin.in_features % group_size:
            raise UserError(f"--group-size {group_size} does not divide the in-features ({lin.in_features}) of {name}")


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

    from pruning.models import decoder_layers

    t_start = time.time()
    meta = dict(meta or {})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    autocast_dtype = DTYPES[config.dtype]
    if autocast_dtype is torch.float16 and device.type != "cuda":
        raise UserError("--dtype float16 needs CUDA (use float32 or bfloat16 on CPU)")
    if config.wbits is not None:
        if not 1 < config.wbits <= 16:
            raise UserError(f"--wbits must be in 2..16, got {config.wbits}")
        check_group_size(model, config.group_size)
    if calib.ndim != 2 or calib.shape[0] < 1:
        raise UserError(f"calibration must be (nsamples, seqlen), got {tuple(calib.shape)}")
    layers = decoder_layers(model)
    unknown = [n for n in config.layer_sparsity if not any(n == f"model.layers.{i}.{ln}" for i in range(len(layers)) for ln in LINEAR_NAMES)]
    if unknown:
        raise UserError(f"layer sparsity names an unknown layer {unknown[0]!r}")

    model.eval()
    if device.type != "cpu":
        model.to("cpu")  # one block at a time visits the accelerator
    buffer_device = torch.device("cpu") if config.offload_acts else device
    ckpt = _Checkpoint(out / "checkpoint", _fingerprint(method, config, calib, meta.get("model"), device))
    if ckpt.done:
        print(f"[besa prune] resuming at block {ckpt.done} of {len(layers)} from {ckpt.root}", file=sys.stderr)

    needs_inputs = getattr(method, "needs_inputs", True) or method.needs_targets
    if needs_inputs:
        inputs = capture_inputs(model, calib, device, buffer_device)
    else:  # data-free method (magnitude): no capture, no propagation
        inputs = BlockInputs(hidden=torch.empty((0, calib.shape[1], model.config.hidden_size)), kwargs={})
    kwargs = inputs.kwargs
    hidden = inputs.hidden  # pruned-propagated inputs, updated in place
    use_dense = method.needs_targets and config.target == "dense"
    dense = hidden.clone() if use_dense else None  # the dense model's own trajectory
    scratch = torch.empty_like(hidden) if method.needs_targets else None  # targets

    targets_all = layer_targets(config, len(layers))
    if getattr(method, "needs_prepass", False):  # e.g. OWL: allocation from the dense model first
        _prepass(method, layers, inputs, device, config, autocast_dtype)
        targets_all = {k: float(v) for k, v in method.plan_sparsity(targets_all).items()}
        bad = {k: v for k, v in targets_all.items() if not 0.0 <= v < 1.0}
        if bad:
            raise UserError(f"{method.name} planned an impossible sparsity {next(iter(bad.items()))}; lower --sparsity or the method's spread")

    keep_all: dict[str, torch.Tensor] = {}
    records: dict[int, dict] = {}
    qparams_all: dict[str, torch.Tensor] = {}
    updated_all: dict[str, tuple[int, str]] = {}  # HF name -> (block, local name) of changed weights
    bar = tqdm(range(len(layers)), desc=f"prune {method.name}", unit="block", disable=not config.progress, file=sys.stderr)
    for i in bar:
        block = layers[i]
        prefix = f"model.layers.{i}."
        block.to(device)
        job = BlockJob(
            index=i,
            prefix=prefix,
            sparsity={n: targets_all[prefix + n] for n in LINEAR_NAMES},
            pattern=config.pattern,
            device=device,
            autocast_dtype=autocast_dtype,
            seed=config.seed,
            wbits=config.wbits,
            group_size=config.group_size,
        )
        if use_dense:  # the dense block on the dense trajectory: targets, and the next dense inputs
            forward_block(block, dense, scratch, kwargs, device, autocast_dtype)
        if i < ckpt.done:
            keep, updates, finals, qparams, record = ckpt.load(i)
            _finalise_block(block, keep, finals or updates)  # finals are already masked and quantized
        else:
            targets = None
            if method.needs_targets:
                if not use_dense:
                    forward_block(block, hidden, scratch, kwargs, device, autocast_dtype)
                targets = scratch
            # Seed per block so a resumed run draws the same numbers as an uninterrupted one.
            torch.manual_seed(config.seed * 1_000_003 + i)
            res = method.prune_block(block, BlockInputs(hidden=hidden, kwargs=kwargs), targets, job)
            _check_result(res, block, job, method.name)
            if config.weight_update.mode != "none":
                _update_weights(res, block, BlockInputs(hidden=hidden, kwargs=kwargs), job, config.weight_update)
            keep = {n: k.detach().cpu().bool() for n, k in res.keep.items()}
            _finalise_block(block, keep, res.weights)
            # clone: on CPU .float().cpu() aliases the weight, which quantization overwrites next
            updates = {n: block.get_submodule(n).weight.detach().float().cpu().clone() for n in res.weights}
            qparams, finals = {}, {}
            if config.wbits is not None:
                from pruning.quant import quantize_block

                qparams = quantize_block(block, keep, job, res.tensors)
                finals = {n: block.get_submodule(n).weight.detach().float().cpu() for n in keep}
            record = json.loads(json.dumps(res.record, default=float))
            ckpt.save(i, keep, updates, finals, qparams, record)
        if use_dense:
            dense, scratch = scratch, dense  # targets of block i are the dense inputs of block i + 1
        if needs_inputs:
            forward_block(block, hidden, hidden, kwargs, device, autocast_dtype)  # pruned propagation
        if device.type != "cpu":
            block.to("cpu")
        for n, k in keep.items():
            keep_all[prefix + n] = k
        qparams_all.update({prefix + n: q for n, q in qparams.items()})
        updated_all.update({prefix + n: (i, n) for n in updates})
        records[i] = record
        if on_block_done is not None:
            on_block_done(i)
    bar.close()
    manifest = _write_run(out, model, method, config, meta, keep_all, records, qparams_all, targets_all, time.time() - t_start,
                          updated_all, ckpt)
    shutil.rmtree(ckpt.root, ignore_errors=True)
    return manifest


# --------------------------------------------------------------------------------------------
# Output files
# --------------------------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    import transformers

    try:
        from importlib.metadata import version

        besa = version("besa-toolkit")
    except Exception:
        besa = "unknown"
    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__, "besa-toolkit": besa}


def _write_run(out: Path, model, method, config, meta, keep_all, records, qparams_all, targets_all, wall_s: float,
               updated_all: dict[str, tuple[int, str]], ckpt: _Checkpoint) -> dict:
    from besa_common.masks import encode_masks
    from besa_common.weights import FILENAME, write_weights

    opts = getattr(method, "config", None)
    options = dataclasses.asdict(opts) if dataclasses.is_dataclass(opts) else {}
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
        from pruning.quant import save_quant

        save_quant(out / "quant.safetensors", qparams_all, {"wbits": config.wbits, "group_size": config.group_size, "method": "lwc" if any(k.endswith(".clip_upper") for k in qparams_all) else "rtn"})
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
            "versions": _versions(),
        }
    )
    for key, val in meta.items():
        manifest.setdefault(key, val)
    atomic_write_json(out / "manifest.json", manifest)
    return manifest
