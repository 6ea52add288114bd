"""Sweep files: parsing and validation, done completely before any point runs.

Everything a point would reject is rejected here, with one line naming the key: an unknown key,
a wrong type, an unknown preset or mode, a grid field the hardware does not have, a grid VALUE the
machine rejects on its own (``lines = 0``, ``tau = 1.5``), a token count or seed out of range, an
unreadable workload.  What remains for run time are combinations of valid values that make an
impossible machine together (``nm_n = 4`` with ``nm_m = 2``): those points are recorded as failed.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from besa_common.errors import UserError
from besa_common.tomlconf import build, check_value, read_toml
from simulator.engine import MODES
from simulator.hardware import load_hardware
from simulator.workload import check_tokens, synthetic

MAX_SEED = 2**63 - 1  # numpy's SeedSequence takes non-negative integers; the C++ side int64


@dataclass(frozen=True)
class WorkloadSpec:
    """One workload: a masks file (``masks``, relative to the sweep file) or a synthetic spec
    (``synthetic``, :func:`simulator.workload.synthetic`'s ``SHAPE[:PATTERN]``)."""

    name: str
    masks: str | None = None
    synthetic: str | None = None

    def identity(self, base: Path | None = None) -> dict[str, Any]:
        """What decides the workload's contents (hashed into point ids)."""
        ident = dataclasses.asdict(self)
        if self.masks:
            p = self.resolved_masks(base)
            ident["masks"] = str(p)
            ident["masks_bytes"] = p.stat().st_size if p.is_file() else None
        return ident

    def resolved_masks(self, base: Path | None = None) -> Path:
        p = Path(os.path.expanduser(self.masks or ""))
        return p if p.is_absolute() or base is None else (base / p)


@dataclass(frozen=True)
class SweepSettings:
    preset: str = "vitcod"
    mode: str = "cycle"
    tokens: tuple[int, ...] = (1,)
    seed: int = 0


@dataclass(frozen=True)
class SweepSpec:
    settings: SweepSettings
    grid: tuple[tuple[str, tuple[Any, ...]], ...]  # (hardware field, values), in file order
    workloads: tuple[WorkloadSpec, ...]
    base: Path | None = None  # folder relative masks paths are resolved against (the sweep file's)


def check_settings(settings: SweepSettings, where: str) -> None:
    """Mode, preset, token counts and seed: the checks the simulator itself would make, made now."""
    if settings.mode not in MODES:
        raise UserError(f"{where}.mode: unknown mode {settings.mode!r} (modes: {', '.join(MODES)})")
    try:
        load_hardware(settings.preset, None)
    except UserError as exc:
        raise UserError(f"{where}.preset: {exc}") from None
    for i, t in enumerate(settings.tokens):
        if t < 1:
            raise UserError(f"{where}.tokens[{i}]: token counts must be >= 1, got {t}")
    try:
        check_tokens(list(settings.tokens), "tokens")  # the simulator's own range check (same code path)
    except UserError as exc:
        raise UserError(f"{where}.tokens: {exc}") from None
    if not 0 <= settings.seed <= MAX_SEED:
        raise UserError(f"{where}.seed: must be in 0..2^63-1, got {settings.seed}")


def check_grid(preset: str, grid_tbl: Any, where: str) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """Validate ``{hardware field: [values]}`` against ``preset``: each field exists, each value has
    the field's type AND gives a valid machine on its own (built once per value).  Returns the grid
    as ``((field, values), ...)`` in file order, values converted to the field's type."""
    if not isinstance(grid_tbl, dict):
        raise UserError(f"{where}: expected a table of hardware field = [values]")
    base = load_hardware(preset, None)
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    grid = []
    for key, values in grid_tbl.items():
        at = f"{where}.{key}"
        if key not in fields or key in ("name", "version", "description"):
            known = sorted(k for k in fields if k not in ("name", "version", "description"))
            raise UserError(f"{at}: unknown hardware field (known: {', '.join(known)})")
        if not isinstance(values, list):
            raise UserError(f"{at}: expected a list of values, got {type(values).__name__} {values!r}")
        if not values:
            raise UserError(f"{at}: empty list (the grid would be empty)")
        default = fields[key]
        tp = type(default) if isinstance(default, (bool, int, float, str)) else Any
        values = [check_value(v, tp, f"{at}[{i}]") for i, v in enumerate(values)]
        for i, v in enumerate(values):
            try:
                load_hardware(preset, {key: v})
            except UserError as exc:
                raise UserError(f"{at}[{i}]: {exc}") from None
        if len(set(values)) != len(values):
            raise UserError(f"{at}: duplicate value {next(v for v in values if values.count(v) > 1)!r}")
        grid.append((key, tuple(values)))
    return tuple(grid)


def _check_workload(wl: WorkloadSpec, base: Path | None, seed: int, where: str) -> None:
    if not wl.name.strip():
        raise UserError(f"{where}.name: empty")
    if (wl.masks is None) == (wl.synthetic is None):
        raise UserError(f"{where}: give exactly one of masks = ... or synthetic = ...")
    if wl.masks is not None:
        p = wl.resolved_masks(base)
        if not p.is_file():
            raise UserError(f"{where}.masks: file not found: {p}")
        return
    try:
        synthetic(wl.synthetic, seed)  # parses the spec; masks are generated lazily, so this is cheap
    except UserError as exc:
        raise UserError(f"{where}.synthetic: {exc}") from None


def parse_sweep(obj: dict[str, Any], source: str = "sweep", base: Path | None = None) -> SweepSpec:
    """Validate a parsed sweep TOML (see :mod:`simulator.sweep`); errors name the key."""
    unknown = set(obj) - {"sweep", "grid", "workload"}
    if unknown:
        raise UserError(f"{source}: unknown key {sorted(unknown)[0]!r} (known: sweep, grid, workload)")
    settings = build(SweepSettings, obj.get("sweep", {}), f"{source}: [sweep]")
    check_settings(settings, f"{source}: [sweep]")
    grid = check_grid(settings.preset, obj.get("grid", {}), f"{source}: [grid]")
    wls = obj.get("workload")
    if wls is None:
        raise UserError(f"{source}: [[workload]]: missing (give at least one workload: masks = ... or synthetic = ...)")
    if not isinstance(wls, list) or not wls:
        raise UserError(f"{source}: [[workload]]: expected one or more [[workload]] tables")
    workloads = []
    for i, tbl in enumerate(wls):
        wl = build(WorkloadSpec, tbl, f"{source}: [[workload]][{i}]")
        _check_workload(wl, base, settings.seed, f"{source}: [[workload]][{i}]")
        workloads.append(wl)
    names = [w.name for w in workloads]
    if len(set(names)) != len(names):
        raise UserError(f"{source}: [[workload]].name: duplicate workload name {[n for n in names if names.count(n) > 1][0]!r}")
    return SweepSpec(settings=settings, grid=grid, workloads=tuple(workloads), base=base)


def load_sweep(path: str | Path) -> SweepSpec:
    path = Path(path)
    return parse_sweep(read_toml(path), source=str(path), base=path.parent.resolve())
