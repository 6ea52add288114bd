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
from besa_common.fileio import resolve_path
from besa_common.tomlconf import build, check_value, read_toml
from simulator.decoder import check_decoder_args, model_name
from simulator.engine import MEMORY_MODES, MODES
from simulator.hardware import load_hardware
from simulator.modelcfg import model_shape
from simulator.sweep.identity import like_source
from simulator.workload import check_tokens, synthetic

# [sweep] keys that are axes of the grid besides the hardware fields of [grid]
SETTINGS_AXES = ("mode", "tokens", "context", "batch")

MAX_SEED = 2**63 - 1  # numpy's SeedSequence takes non-negative integers; the C++ side int64


@dataclass(frozen=True)
class WorkloadSpec:
    """One workload: a masks file (``masks``) or a synthetic spec (``synthetic``,
    :func:`simulator.workload.synthetic`'s ``SHAPE[:PATTERN]``); paths in either (the masks file, a
    ``like=`` source, a ``config.json`` shape) are relative to the sweep file and stored resolved.
    ``model``: the model shapes of the decoder step (``context``); default the synthetic spec's model,
    or the model the masks' manifest names."""

    name: str
    masks: str | None = None
    synthetic: str | None = None
    model: str | None = None

    def resolved_masks(self, base: Path | None = None) -> Path:
        return path_from_file(self.masks or "", base)


@dataclass(frozen=True)
class SweepSettings:
    """``[sweep]``: every list is an axis of the grid (as are the hardware fields of ``[grid]``)."""

    preset: str = "vitcod"
    mode: str | tuple[str, ...] = "cycle"  # one mode or a list; rows are tagged with theirs
    tokens: tuple[int, ...] = (1,)
    context: int | tuple[int, ...] | None = None  # KV-cache positions (0 = a fresh prompt); unset: the linears only
    batch: int | tuple[int, ...] = 1  # sequences the tokens in flight come from (with context)
    seed: int = 0

    @property
    def modes(self) -> tuple[str, ...]:
        return _tup(self.mode)

    @property
    def contexts(self) -> tuple[int | None, ...]:
        return (None,) if self.context is None else _tup(self.context)

    @property
    def batches(self) -> tuple[int, ...]:
        return _tup(self.batch)


def _tup(v) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,)


@dataclass(frozen=True)
class SweepSpec:
    settings: SweepSettings
    grid: tuple[tuple[str, tuple[Any, ...]], ...]  # (hardware field, values), in file order
    workloads: tuple[WorkloadSpec, ...]
    base: Path | None = None  # the sweep file's folder: relative paths in it are resolved against it
    preset_path: str | None = None  # the preset as load_hardware takes it (a file resolved against base)
    models: tuple[str | None, ...] = ()  # per workload: the model of its decoder step (with context)

    @property
    def preset(self) -> str:
        return self.preset_path or self.settings.preset


def path_from_file(text: str, base: Path | None) -> Path:
    """``text`` (``~`` expanded) relative to ``base`` (the sweep or experiment file's folder)."""
    p = Path(os.path.expanduser(text))
    return p if p.is_absolute() or base is None else (base / p)


def resolve_preset(preset: str, base: Path | None) -> str:
    """A preset NAME stays a name; a file (``.toml`` or a path) is resolved against ``base``."""
    if preset.endswith(".toml") or os.sep in preset or "/" in preset:
        return str(path_from_file(preset, base))
    return preset


def _dupe(values: tuple, at: str) -> None:
    if len(set(values)) != len(values):
        raise UserError(f"{at}: duplicate value {next(v for v in values if values.count(v) > 1)!r}")


def check_settings(settings: SweepSettings, where: str, base: Path | None = None) -> None:
    """Modes, preset, token counts, context, batch and seed: the checks the simulator itself would
    make, made now."""
    modes = settings.modes
    for m in modes:
        if m not in MODES:
            raise UserError(f"{where}.mode: unknown mode {m!r} (modes: {', '.join(MODES)})")
    _dupe(modes, f"{where}.mode")
    try:
        load_hardware(resolve_preset(settings.preset, base), None)
    except UserError as exc:
        raise UserError(f"{where}.preset: {exc}") from None
    for i, t in enumerate(settings.tokens):
        if t < 1:
            raise UserError(f"{where}.tokens[{i}]: token counts must be >= 1, got {t}")
    try:
        check_tokens(list(settings.tokens), "tokens")  # the simulator's own range check (same code path)
    except UserError as exc:
        raise UserError(f"{where}.tokens: {exc}") from None
    _dupe(tuple(settings.tokens), f"{where}.tokens")
    if not 0 <= settings.seed <= MAX_SEED:
        raise UserError(f"{where}.seed: must be in 0..2^63-1, got {settings.seed}")
    if settings.context is None:
        if settings.batches != (1,):
            raise UserError(f"{where}.batch: batch is the decoder step's; give context = [...] too")
        return
    _dupe(settings.contexts, f"{where}.context")
    _dupe(settings.batches, f"{where}.batch")
    bad = [m for m in modes if m not in MEMORY_MODES]
    if bad:
        raise UserError(f"{where}.context: needs modes with a memory model ({', '.join(MEMORY_MODES)}), not {bad[0]}")
    for c in settings.contexts:
        for b in settings.batches:
            try:
                check_decoder_args(c, b, list(settings.tokens))
            except UserError as exc:
                raise UserError(f"{where}: {str(exc).replace('--', '')}") from None


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
        if key in SETTINGS_AXES:
            raise UserError(f"{at}: not a hardware field; give {key} = [...] in [sweep] (every list there is an axis of the grid)")
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


def _resolve_synthetic(spec: str, base: Path | None) -> str:
    """A synthetic spec with its file paths (a config.json / .gguf shape, a ``like=`` source)
    resolved against ``base``; names and matrix shapes stay as they are."""
    shape, sep, pattern = spec.strip().partition(":")
    name, bracket, blocks = shape.partition("[")
    if base is not None and (base / os.path.expanduser(name.strip())).exists() and not Path(name.strip()).is_absolute():
        shape = f"{path_from_file(name.strip(), base)}{bracket}{blocks}"
    like = like_source(spec)
    if like is not None and base is not None:
        pattern = pattern.replace(like, str(path_from_file(like.strip(), base)), 1)
    return f"{shape}{sep}{pattern}"


def _check_workload(wl: WorkloadSpec, base: Path | None, settings: SweepSettings, where: str) -> tuple[WorkloadSpec, str | None]:
    """The workload with its paths resolved, and the model of its decoder step (None without context)."""
    if not wl.name.strip():
        raise UserError(f"{where}.name: empty")
    if (wl.masks is None) == (wl.synthetic is None):
        raise UserError(f"{where}: give exactly one of masks = ... or synthetic = ...")
    if wl.masks is not None:
        p = wl.resolved_masks(base)
        if not p.is_file():
            raise UserError(f"{where}.masks: file not found: {p}")
        wl = dataclasses.replace(wl, masks=str(resolve_path(p)))
    else:
        wl = dataclasses.replace(wl, synthetic=_resolve_synthetic(wl.synthetic, base))
        try:
            synthetic(wl.synthetic, settings.seed)  # parses the spec; masks are generated lazily, so this is cheap
        except UserError as exc:
            raise UserError(f"{where}.synthetic: {exc}") from None
    if settings.context is None:
        return wl, None
    model = wl.model
    if model is not None and path_from_file(model, base).exists():
        model = str(resolve_path(path_from_file(model, base)))
    try:
        model = model_name(model, wl.synthetic, wl.masks)
        model_shape(model)
    except UserError as exc:
        raise UserError(f"{where}.model: {str(exc).replace('--', '')}") from None
    return wl, model


def parse_sweep(obj: dict[str, Any], source: str = "sweep", base: Path | None = None) -> SweepSpec:
    """Validate a parsed sweep TOML (see :mod:`simulator.sweep`); errors name the key.  Relative
    paths (the preset file, masks files, ``like=`` sources, model configs) are resolved against
    ``base``, the sweep file's folder."""
    unknown = set(obj) - {"sweep", "grid", "workload"}
    if unknown:
        raise UserError(f"{source}: unknown key {sorted(unknown)[0]!r} (known: sweep, grid, workload)")
    settings = build(SweepSettings, obj.get("sweep", {}), f"{source}: [sweep]")
    check_settings(settings, f"{source}: [sweep]", base)
    preset = resolve_preset(settings.preset, base)
    grid = check_grid(preset, obj.get("grid", {}), f"{source}: [grid]")
    wls = obj.get("workload")
    if wls is None:
        raise UserError(f"{source}: [[workload]]: missing (give at least one workload: masks = ... or synthetic = ...)")
    if not isinstance(wls, list) or not wls:
        raise UserError(f"{source}: [[workload]]: expected one or more [[workload]] tables")
    workloads, models = [], []
    for i, tbl in enumerate(wls):
        wl = build(WorkloadSpec, tbl, f"{source}: [[workload]][{i}]")
        wl, model = _check_workload(wl, base, settings, f"{source}: [[workload]][{i}]")
        workloads.append(wl)
        models.append(model)
    names = [w.name for w in workloads]
    if len(set(names)) != len(names):
        raise UserError(f"{source}: [[workload]].name: duplicate workload name {[n for n in names if names.count(n) > 1][0]!r}")
    return SweepSpec(
        settings=settings,
        grid=grid,
        workloads=tuple(workloads),
        base=base,
        preset_path=preset if preset != settings.preset else None,
        models=tuple(models),
    )


def load_sweep(path: str | Path) -> SweepSpec:
    path = Path(path)
    return parse_sweep(read_toml(path), source=str(path), base=resolve_path(path.parent))
