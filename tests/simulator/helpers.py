"""Shared helpers of the simulator tests: small hardware and random masks."""

from __future__ import annotations

import numpy as np

from simulator.hardware import load_hardware

BIG = 10**9  # buffers large enough for any small tile


def small_hw(**over):
    """A tiny machine for hand-checked cases (buffers never limit)."""
    base = {"weight_buffer_bytes": BIG, "act_buffer_bytes": BIG, "out_buffer_bytes": BIG, "index_buffer_bytes": BIG}
    base.update(over)
    return load_hardware("vitcod", base)


def random_keep(rng: np.random.Generator, rows: int, cols: int, density: float) -> np.ndarray:
    return rng.random((rows, cols)) < density
