"""The points of a sweep: the grid expanded, each point with a content-addressed id, and batches.

A point is (machine, workload, mode, tokens, context, batch); its id is the digest of what decides
its result (:mod:`simulator.sweep.identity`): the RESOLVED machine, the workload's contents, the
rest of the point and the simulator version.  So a rerun of the same file recognises the points
already finished, and an edited preset file, masks file or ``like=`` source recomputes exactly the
points it affects.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from besa_common.errors import UserError
from simulator.hardware import Hardware, hardware_builder
from simulator.modelcfg import ModelShape, model_shape
from simulator.sweep.identity import digest, fast_ids, machine_id, point_id, workload_id
from simulator.sweep.spec import SweepSpec, WorkloadSpec

__all__ = ["Point", "chunks", "digest", "expand", "machines", "point_id"]


@dataclass(frozen=True)
class Point:
    point_id: str
    preset: str  # as the sweep file names it (a label; the machine is ``hardware``)
    mode: str
    hw: tuple[tuple[str, Any], ...]  # the swept hardware fields (the grid's axis values)
    workload: WorkloadSpec
    workload_key: str  # digest of the workload's contents (what its masks depend on)
    tokens: int
    seed: int
    masks_path: str | None
    hardware: Hardware | None = None  # the resolved machine (shared by the points of one machine)
    hw_id: str = ""  # its digest
    context: int | None = None  # KV-cache positions of the decoder step (None: the linears only)
    batch: int = 1
    model: ModelShape | None = None  # the decoder step's model (with context)
    invalid: str | None = None  # why the grid combination is no machine (the point is recorded as failed)

    @property
    def machine(self) -> tuple:
        """Points with equal ``machine`` share ONE simulation of the linears (only tokens, context
        and batch differ)."""
        return (self.workload_key, self.hw_id, self.mode)


def resolve_machines(spec: SweepSpec) -> list[tuple[tuple[tuple[str, Any], ...], Hardware | None, str, str | None]]:
    """Every grid combination: (its overrides, the resolved machine, the machine's digest, None),
    or (overrides, None, a digest of the combination, the one-line reason) when the values make an
    impossible machine together (``nm_n = 4`` with ``nm_m = 2``: those points are recorded as failed)."""
    keys = [k for k, _ in spec.grid]
    combos = list(itertools.product(*[v for _, v in spec.grid])) if spec.grid else [()]
    build = hardware_builder(spec.preset)  # the preset file read once
    out = []
    for combo in combos:
        hw = tuple(zip(keys, combo))
        try:
            machine = build(dict(hw) or None)
        except UserError as exc:
            out.append((hw, None, digest({"unresolved": spec.preset, "overrides": sorted(hw)}), str(exc)))
            continue
        out.append((hw, machine, machine_id(machine), None))
    return out


def expand(spec: SweepSpec) -> list[Point]:
    """All points of the grid, in a stable order: workload-major, then machine, mode, context,
    batch, with token counts innermost (the points of one machine are adjacent and simulated
    together).  Two grid combinations that resolve to the same machine give one set of points."""
    s = spec.settings
    tokens = tuple(int(t) for t in s.tokens)
    resolved = resolve_machines(spec)
    models = spec.models or (None,) * len(spec.workloads)
    points, seen = [], set()
    for wl, model_name in zip(spec.workloads, models):
        masks = str(wl.resolved_masks(spec.base)) if wl.masks else None
        wkey = workload_id(masks, wl.synthetic, s.seed)
        model = model_shape(model_name) if model_name else None
        for hw, machine, hw_id, invalid in resolved:
            for mode in s.modes:
                for context in s.contexts:
                    for batch in s.batches:
                        for t, pid in zip(tokens, fast_ids(hw_id, wkey, wl.name, mode, tokens, context, batch)):
                            if pid in seen:
                                continue
                            seen.add(pid)
                            points.append(Point(pid, s.preset, mode, hw, wl, wkey, t, s.seed, masks, machine, hw_id, context, batch, model, invalid))
    return points


def machines(points: list[Point]) -> list[list[Point]]:
    """Consecutive points grouped by machine (see :attr:`Point.machine`)."""
    out: list[list[Point]] = []
    for p in points:
        if out and out[-1][0].machine == p.machine:
            out[-1].append(p)
        else:
            out.append([p])
    return out


def chunks(points: list[Point], n_chunks: int) -> list[list[Point]]:
    """Split points into about ``n_chunks`` contiguous batches (one Dask task each), never
    separating the points of one machine."""
    ms = machines(points)
    size = max(1, -(-len(ms) // max(1, n_chunks)))
    return [[p for m in ms[i : i + size] for p in m] for i in range(0, len(ms), size)]
