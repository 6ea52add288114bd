"""Block driver, stage 1: capture the inputs of decoder block 0 and push activations through a block
(pruned propagation, the dense trajectory, OWL's dense pre-pass).  See :mod:`pruning.driver`."""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch import nn

from pruning.device import autocast_context
from pruning.driver.config import DriverConfig
from pruning.methods.base import BlockInputs, BlockJob, PruningMethod
from pruning.models import decoder_layers


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


@torch.no_grad()
def dense_prepass(method: PruningMethod, layers, inputs: BlockInputs, device, config: DriverConfig, autocast_dtype) -> None:
    """Show every block of the DENSE model to ``method.observe_block`` (dense propagation, one buffer)."""
    from tqdm import tqdm

    hidden = inputs.hidden.clone()
    for i in tqdm(range(len(layers)), desc=f"{method.name} pre-pass", unit="block", disable=not config.progress, file=sys.stderr):
        block = layers[i]
        block.to(device)
        job = BlockJob(
            index=i,
            prefix=f"model.layers.{i}.",
            sparsity={},
            pattern=config.pattern,
            device=device,
            autocast_dtype=autocast_dtype,
            seed=config.seed,
            wbits=config.wbits,
            group_size=config.group_size,
        )
        method.observe_block(block, BlockInputs(hidden=hidden, kwargs=inputs.kwargs), job)
        forward_block(block, hidden, hidden, inputs.kwargs, device, autocast_dtype)
        if device.type != "cpu":
            block.to("cpu")
    del hidden
