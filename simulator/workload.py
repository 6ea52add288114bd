"""Workloads: the list of weight matrices (bit-packed keep masks, 1 = kept) a simulation runs.

Two sources:

* :func:`from_masks` — a masks file written by ``besa prune`` (``besa_common.masks`` format);
* :func:`synthetic` — seeded masks for exploration without pruning.  ``spec`` is
  ``SHAPE[:PATTERN]`` with

  - ``SHAPE``: a model — a shipped config name (``llama-3-8b``, ``mistral-7b``, ``smollm2-135m``, the
    old ``llama-7b`` ...), a Hugging Face ``config.json`` or a directory holding one, or a ``.gguf``
    file (:func:`simulator.modelcfg.model_shape`) — optionally ``[B]`` to keep only the first B
    transformer blocks (``llama-7b[2]``); or one matrix ``MxK`` (out x in features), optionally
    ``*COUNT`` (``4096x4096*3``);
  - ``PATTERN``: see :mod:`simulator.synth` — ``sparsity=S`` (default ``sparsity=0.5``), ``nm=N:M``,
    ``skewed=S[/SIGMA]``, ``like=MASKS_FILE[@S]``, ``dense``.  S = fraction PRUNED, N:M = N KEPT of
    every M; each generator keeps exactly ``round((1-S) * rows * cols)`` weights per layer.

Masks of a synthetic workload are generated lazily, one layer at a time, from a per-layer seed
``SeedSequence([seed, layer_index])``: same seed -> bit-identical masks, and a whole LLaMA-70B never
sits in memory at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from besa_common import llama
from besa_common.errors import UserError
from besa_common.masks import read_masks_packed, unpack_keep
from besa_common.modelconfig import MAX_DIM  # rows or cols of one matrix
from simulator.hardware import BW_SCALE, GATHER_SCALE
from simulator.modelcfg import model_shape
from simulator.synth import parse_pattern

PROJECTIONS = llama.PROJECTIONS

# Input ranges, checked in Python before anything reaches the C++ core (int64 counters).
MAX_WEIGHTS = 1 << 32  # rows * cols of one matrix (512 MiB of packed bits)
MAX_COUNT = 1 << 16  # matrices of one MxK*COUNT synthetic workload
MAX_TOKENS = 1 << 24  # tokens in flight (16.7 M)
MAX_SEED = (1 << 63) - 1
INT64_BUDGET = 1 << 62  # every count the engine forms must stay below this (int64 with headroom)


def check_tokens(tokens, where: str = "--tokens") -> list[int]:
    """Token counts: integers in [1, MAX_TOKENS] (one-line UserError otherwise)."""
    out = []
    for t in tokens:
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 1 <= int(t) <= MAX_TOKENS:
            raise UserError(f"{where}: token counts must be integers in [1, {MAX_TOKENS}], got {t!r}")
        out.append(int(t))
    if not out:
        raise UserError(f"{where}: no token counts given")
    return out


def check_seed(seed, where: str = "--seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) <= MAX_SEED:
        raise UserError(f"{where} must be an integer in [0, 2**63 - 1], got {seed!r}")
    return int(seed)


def check_shape(rows: int, cols: int, where: str) -> None:
    if not (1 <= rows <= MAX_DIM and 1 <= cols <= MAX_DIM and rows * cols <= MAX_WEIGHTS):
        raise UserError(f"{where}: a {rows}x{cols} matrix is outside the supported range (1..{MAX_DIM} rows and columns, at most {MAX_WEIGHTS} weights)")


def check_magnitudes(workload, hw, tokens) -> None:
    """Refuse a (workload, machine, tokens) whose counts could overflow the engine's int64.

    Conservative upper bounds, computed exactly with Python integers for the largest rows and the
    largest columns of the workload (every bound grows with both, so one check per token count
    covers every layer): the bits one tile moves times the bandwidth scale, a layer's total bits and
    MACs, and its cycles at the slowest bandwidth.
    """
    if not workload:
        return
    big = max(workload, key=lambda lw: lw.rows * lw.cols)
    m, k = max(lw.rows for lw in workload), max(lw.cols for lw in workload)
    bw = hw.bw_bits_scaled
    # a derived tile (0) can be as small as 1 x 1 x 1: bound with the most tiles
    hw_tm, hw_tn, hw_tk = hw.tile_m or 1, hw.tile_n or 1, hw.tile_k or 1
    for n in tokens:
        tm, tn = min(hw.tile_m or m, m), min(hw.tile_n or n, n)
        tile_bits = (tm * k + k * tn + tm * tn) * 64 * 2
        tiles = -(-m // hw_tm) * -(-n // hw_tn) * -(-k // min(hw_tk, k))
        total_bits = (m * k * -(-n // hw_tn) + k * n * -(-m // hw_tm) + m * n) * 64 * 2
        worst = max(tile_bits * BW_SCALE, total_bits * BW_SCALE // bw + m * k * n * GATHER_SCALE, tiles * (hw.pipeline_fill + 1) * hw_tm * hw_tn)
        if worst >= INT64_BUDGET:
            raise UserError(
                f"layer {big.name!r} ({big.rows}x{big.cols}) at {n} tokens on {hw.name!r}: the simulator's counts "
                f"would overflow 64-bit integers; use fewer tokens, a smaller shape or more bandwidth"
            )


@dataclass(frozen=True)
class LayerWorkload:
    """One weight matrix: ``rows`` = out-features (M), ``cols`` = in-features (K).

    ``load()`` returns the keep mask bit-packed as ``uint8 [rows, ceil(cols/8)]`` (little bit order,
    pad bits 0, 1 = kept) — see :mod:`besa_common.masks`.
    """

    name: str
    rows: int
    cols: int
    proj: str
    block: int
    loader: Callable[[], np.ndarray]

    def load(self) -> np.ndarray:
        packed = self.loader()
        if packed.shape != (self.rows, (self.cols + 7) // 8) or packed.dtype != np.uint8:
            raise UserError(f"layer {self.name!r}: packed mask {packed.shape} {packed.dtype} disagrees with [{self.rows}, {self.cols}]")
        return packed

    def keep(self) -> np.ndarray:
        """The unpacked bool ``[rows, cols]`` keep mask (small layers / the reference engine)."""
        return unpack_keep(self.load(), self.cols)


def _proj_and_block(name: str) -> tuple[str, int]:
    proj = name.rsplit(".", 1)[-1]
    m = re.search(r"layers\.(\d+)\.", name)
    return proj, int(m.group(1)) if m else -1


def from_packed(packed: dict[str, np.ndarray], shapes: dict[str, tuple[int, int]], where: str = "masks") -> list[LayerWorkload]:
    """Layers from packed keep masks (``besa_common.masks`` layout), in block then projection order."""

    def order(name: str):
        proj, block = _proj_and_block(name)
        return (block, PROJECTIONS.index(proj) if proj in PROJECTIONS else len(PROJECTIONS), name)

    out = []
    for name in sorted(shapes, key=order):
        rows, cols = shapes[name]
        check_shape(rows, cols, f"{where}: layer {name!r}")
        proj, block = _proj_and_block(name)
        arr = packed[name]
        out.append(LayerWorkload(name, rows, cols, proj, block, (lambda a=arr: a)))
    return out


def from_masks(path) -> list[LayerWorkload]:
    """The layers of a masks file (or a run directory holding ``masks.safetensors``), in block order
    then projection order (q k v o gate up down)."""
    if Path(path).is_dir():
        path = Path(path) / "masks.safetensors"
    packed, shapes, _manifest = read_masks_packed(path)
    return from_packed(packed, shapes, str(path))


def _shapes(shape: str) -> list[tuple[str, int, int, str, int]]:
    """``(name, rows, cols, proj, block)`` of every layer of a SHAPE: ``MxK[*COUNT]`` or a model
    (:func:`simulator.modelcfg.model_shape`: shipped name, config.json, directory, .gguf) with an
    optional ``[B]`` = its first B blocks."""
    m = re.fullmatch(r"(\d+)x(\d+)(?:\*(\d+))?", shape.lower())
    if m:
        rows, cols, count = int(m.group(1)), int(m.group(2)), int(m.group(3) or 1)
        if rows < 1 or cols < 1 or count < 1:
            raise UserError(f"synthetic shape {shape!r}: sizes must be >= 1")
        check_shape(rows, cols, f"synthetic shape {shape!r}")
        if count > MAX_COUNT:
            raise UserError(f"synthetic shape {shape!r}: at most {MAX_COUNT} matrices")
        return [(f"matrix.{i}", rows, cols, f"{rows}x{cols}", i) for i in range(count)]
    m = re.fullmatch(r"(.+?)(?:\[(\d+)\])?", shape)
    try:
        ms = model_shape(m.group(1))
    except UserError as exc:
        if Path(m.group(1)).expanduser().exists():
            raise
        raise UserError(f"synthetic shape {shape!r} not understood: {exc}; or a matrix MxK[*COUNT]") from None
    blocks = ms.layers
    if m.group(2) is not None:
        if not 1 <= int(m.group(2)) <= blocks:
            raise UserError(f"synthetic shape {shape!r}: {m.group(1)} has {blocks} blocks")
        blocks = int(m.group(2))
    dims = ms.linear_shapes()
    for p, (rows, cols) in dims.items():
        check_shape(rows, cols, f"synthetic shape {shape!r} ({p})")
    return [(f"model.layers.{b}.{llama.LINEAR_OF[p]}", *dims[p], p, b) for b in range(blocks) for p in PROJECTIONS]


def synthetic_shapes(spec: str) -> list[tuple[str, int, int, str, int]]:
    """``(name, rows, cols, proj, block)`` of every layer a synthetic ``SHAPE[:PATTERN]`` spec has (what
    a model name, ``config.json`` or ``.gguf`` expands to; no mask generated)."""
    return _shapes(spec.strip().partition(":")[0].strip())


def synthetic(spec: str, seed: int = 0) -> list[LayerWorkload]:
    """Seeded synthetic workload, e.g. ``synthetic("llama-7b:sparsity=0.5", seed=0)``."""
    seed = check_seed(seed)
    shape, _, pattern = spec.strip().partition(":")
    shapes = _shapes(shape.strip())
    gens = parse_pattern(pattern or "sparsity=0.5", shapes)
    out = []
    for i, ((name, rows, cols, proj, block), gen) in enumerate(zip(shapes, gens)):

        def loader(rows=rows, cols=cols, i=i, gen=gen):
            rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), i])))
            return gen(rows, cols, rng)

        out.append(LayerWorkload(name, rows, cols, proj, block, loader))
    return out
