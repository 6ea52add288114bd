"""The points of a sweep: the grid expanded, each point with a STABLE id, and batches for workers.

A point is (preset, mode, hardware overrides, workload, tokens, seed); its id is a hash of exactly
those values (:func:`point_id`), so a rerun of the same file — or of a file with more grid values —
recognises the points already finished.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from typing import Any

from besa_common.digest import json_digest
from simulator.sweep.spec import SweepSpec, WorkloadSpec


@dataclass(frozen=True)
class Point:
    point_id: str
    preset: str
    mode: str
    hw: tuple[tuple[str, Any], ...]
    workload: WorkloadSpec
    workload_key: str  # digest of the workload's identity AND the seed (what its masks depend on)
    tokens: int
    seed: int
    masks_path: str | None

    @property
    def machine(self) -> tuple:
        """Points with equal ``machine`` differ only in ``tokens``: one simulator call serves them all."""
        return (self.workload_key, self.preset, self.mode, self.hw, self.seed)


def digest(obj: Any, n: int = 16) -> str:
    """sha1 of the canonical JSON of ``obj``, ``n`` hex digits (besa_common.digest; the recorded format)."""
    return json_digest(obj, algorithm="sha1", length=n)


def point_id(preset: str, mode: str, hw, workload_identity: dict, tokens: int, seed: int) -> str:
    """The definition of a point's id (ids of earlier results depend on it: never change it)."""
    return digest({"preset": preset, "mode": mode, "hw": sorted(hw), "workload": workload_identity, "tokens": tokens, "seed": seed})


def _fast_ids(preset: str, mode: str, hw, ident_json: str, tokens: tuple[int, ...], seed: int) -> list[str]:
    """:func:`point_id` for every token count of one machine, serialising the shared parts once
    (a 100,000-point grid spends no noticeable time here; a test checks it equals the definition)."""
    head = f'{{"hw": {json.dumps(sorted(hw), default=str)}, "mode": {json.dumps(mode)}, "preset": {json.dumps(preset)}, "seed": {json.dumps(seed)}, "tokens": '
    tail = f', "workload": {ident_json}}}'
    return [hashlib.sha1(f"{head}{json.dumps(t)}{tail}".encode()).hexdigest()[:16] for t in tokens]


def expand(spec: SweepSpec) -> list[Point]:
    """All points of the grid, in a stable order: workload-major, token counts innermost (the
    points of one machine are adjacent and simulated together)."""
    s = spec.settings
    keys = [k for k, _ in spec.grid]
    combos = list(itertools.product(*[v for _, v in spec.grid])) if spec.grid else [()]
    tokens = tuple(int(t) for t in s.tokens)
    points = []
    for wl in spec.workloads:
        ident = wl.identity(spec.base)
        ident_json = json.dumps(ident, sort_keys=True, default=str)
        wkey = digest({"workload": ident, "seed": s.seed}, 12)
        masks = str(wl.resolved_masks(spec.base)) if wl.masks else None
        for combo in combos:
            hw = tuple(zip(keys, combo))
            for t, pid in zip(tokens, _fast_ids(s.preset, s.mode, hw, ident_json, tokens, s.seed)):
                points.append(Point(pid, s.preset, s.mode, hw, wl, wkey, t, s.seed, masks))
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
    separating the token counts of one machine."""
    ms = machines(points)
    size = max(1, -(-len(ms) // max(1, n_chunks)))
    return [[p for m in ms[i : i + size] for p in m] for i in range(0, len(ms), size)]
