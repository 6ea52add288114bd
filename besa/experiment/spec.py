"""Experiment files for ``besa run``: parsing, validation and the list of runs they expand to.

No torch here: ``besa run`` validates the whole file before it starts anything, in a second.
An experiment (TOML, see ``configs/experiments/default.toml``)::

    [experiment]        name, model (``smollm2-135m``, an HF dir or a .gguf), seed
    [calibration]       dataset, nsamples (windows), seqlen (tokens per window)
    [eval]              dataset, seqlen, max_windows (0 = the whole test split), hellaswag (tasks of the
                        shipped HellaSwag set each run is scored on: the seeded ``--limit`` subset; 0 = none)
    [[runs]]            one or more grids: methods × sparsities × patterns × wbits; optionally
                        ``options`` (``besa prune`` flags for THIS grid's runs, over ``[options.<method>]``)
                        with a ``tag`` naming the variant (run ``besa-admm-s50`` for tag ``admm``)
                        (sparsity = fraction PRUNED; pattern "N:M" = at most N of every M consecutive
                        input weights KEPT, whose sparsity is 1 - N/M: ``sparsities`` apply to
                        ``unstructured`` only)
                        (``dense`` = no pruning: eval + dense simulation only; wbits 16 = no quantization)
    [[simulate]]        preset, modes, tokens: every run is simulated on each
    [options.<method>]  extra ``besa prune`` flags for that method (``d_coef = 5`` -> ``--d-coef 5``)
    [whatif]            optional: a small hardware sweep over one run's masks (the report's sweep heatmap)
    [siblings]          optional: the equal-sparsity n:m sibling of each unstructured run (below)

**Siblings.**  Each pruned unstructured run whose sparsity equals that of ``[siblings].pattern``
(default ``2:4``, i.e. 50 %) is paired with an n:m run at the same sparsity and weight bits: the
same method at that pattern when the experiment has it, else ``[siblings].fallback`` (default
``wanda``) at that pattern, on the experiment's one calibration — ADDED to the plan when the
experiment lacks it.  ``[siblings].pairs`` names a pairing explicitly; ``enabled = false`` turns
pairing off.  ``besa run`` simulates every sibling on the n:m engine (mode ``nm``) of each preset the
experiment runs in ``cycle`` mode, so the report can put "unstructured on the sparse engine" next to
"n:m on the n:m engine" at equal sparsity (see :func:`pair_siblings`).

Any unknown key, wrong type, unknown method / preset / mode or empty grid is a one-line
:class:`UserError` naming the key.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from besa_common.errors import UserError
from besa_common.fileio import resolve_path
from besa_common.sparsity import check_target, format_nm, parse_nm, parse_pattern, pattern_sparsity
from besa_common.tomlconf import build, check_value, read_toml
from pruning.method_names import METHOD_NAMES
from pruning.zeroshot.hellaswag import N_TASKS as HELLASWAG_TASKS
from simulator.engine import MODES
from simulator.hardware import list_presets
from simulator.sweep import SweepSettings, check_grid, check_settings, check_workers
from simulator.sweep.spec import path_from_file, resolve_preset

# "dense" = no pruning; the method names come from the light registry (no torch imported).
KNOWN_METHODS = ("dense",) + METHOD_NAMES


@dataclass(frozen=True)
class ExperimentSection:
    name: str = "experiment"
    model: str = "smollm2-135m"
    seed: int = 0


@dataclass(frozen=True)
class Calibration:
    dataset: str = "wiki"
    nsamples: int = 32
    seqlen: int = 256


@dataclass(frozen=True)
class EvalSettings:
    dataset: str = "wiki"
    seqlen: int = 512
    max_windows: int = 0  # 0 = every window of the test split
    hellaswag: int = 0  # zero-shot HellaSwag tasks per run (besa eval --tasks hellaswag --limit N); 0 = none


@dataclass(frozen=True)
class RunGrid:
    methods: tuple[str, ...]
    sparsities: tuple[float, ...] = (0.5,)
    patterns: tuple[str, ...] = ("unstructured",)
    wbits: tuple[int, ...] = (16,)
    tag: str = ""  # a variant's name in its runs' folder names (besa-admm-s50); required with options
    options: dict = field(default_factory=dict)  # besa prune flags of this grid's runs (over [options.<method>])


@dataclass(frozen=True)
class SimTarget:
    preset: str
    modes: tuple[str, ...] = ("cycle",)
    tokens: tuple[int, ...] = (1,)


@dataclass(frozen=True)
class WhatIf:
    run: str
    grid: dict = field(default_factory=dict)
    tokens: tuple[int, ...] = (1,)
    preset: str = "vitcod"
    mode: str = "cycle"
    workers: int = 2


@dataclass(frozen=True)
class SiblingSettings:
    """``[siblings]``: see the module docstring."""

    enabled: bool = True
    pattern: str = "2:4"  # n KEPT of every m
    fallback: str = "wanda"
    pairs: dict = field(default_factory=dict)  # unstructured run name -> n:m run name


@dataclass(frozen=True)
class Sibling:
    """One pairing: the unstructured run ``run`` and its n:m ``sibling`` (run names).

    ``why``: ``same-method`` (the experiment has the run's own method at the pattern), ``fallback``
    (``[siblings].fallback`` at the pattern, same calibration) or ``configured`` (``[siblings].pairs``);
    ``added``: the sibling run is in the plan only because of this pairing."""

    run: str
    sibling: str
    why: str
    added: bool = False


@dataclass(frozen=True)
class RunSpec:
    """One run of the experiment: its folder name and what ``besa prune`` is asked to do."""

    name: str
    method: str
    sparsity: float
    pattern: str  # "unstructured" or "n:m" (n KEPT of every m; sparsity = 1 - n/m)
    wbits: int  # 16 = no quantization
    tag: str = ""  # the variant ([[runs]].tag), "" for the method's plain run
    options: tuple[tuple[str, object], ...] = ()  # the grid's own besa prune flags ([[runs]].options), key order kept

    @property
    def dense(self) -> bool:
        return self.method == "dense"


@dataclass(frozen=True)
class Experiment:
    experiment: ExperimentSection
    calibration: Calibration
    eval: EvalSettings
    runs: tuple[RunGrid, ...]
    simulate: tuple[SimTarget, ...]
    options: dict = field(default_factory=dict)
    whatif: WhatIf | None = None
    source: str = "experiment"
    siblings: SiblingSettings = SiblingSettings()

    def run_specs(self) -> list[RunSpec]:
        """Every run of the experiment: the grids' runs in file order, then the sibling runs the
        pairing added (:meth:`sibling_plan`)."""
        return self.grid_specs() + self.sibling_plan()[1]

    def sibling_plan(self) -> tuple[dict[str, Sibling], list[RunSpec]]:
        """``({unstructured run: Sibling}, [sibling runs added to the plan])``: :func:`pair_siblings`."""
        return pair_siblings(self.grid_specs(), self.siblings, f"{self.source}: [siblings]")

    def grid_specs(self) -> list[RunSpec]:
        """Every run of the grids, deduplicated, in file order.  Two DIFFERENT runs with the same
        name (sparsities 0.3333331 and 0.3333332 both give ``-s0.333333``) would share one folder
        and overwrite each other: a UserError."""
        out: dict[str, RunSpec] = {}
        for g in self.runs:
            for method in g.methods:
                if method == "dense":
                    out.setdefault("dense", RunSpec("dense", "dense", 0.0, "unstructured", 16))
                    continue
                for s in g.sparsities:
                    for pat in g.patterns:
                        s_run = s if pat == "unstructured" else pattern_sparsity(pat)
                        for wb in g.wbits:
                            name = run_name(method, s_run, pat, wb, g.tag)
                            spec = RunSpec(name, method, s_run, pat, wb, g.tag, tuple(g.options.items()))
                            other = out.setdefault(spec.name, spec)
                            if other != spec and other.options != spec.options:
                                raise UserError(f"{self.source}: [[runs]]: two grids give run {spec.name!r} different options; give them different tags")
                            if other != spec:
                                raise UserError(
                                    f"{self.source}: [[runs]]: sparsities {other.sparsity!r} and {spec.sparsity!r} of "
                                    f"{method} would both be run {spec.name!r} (one folder); make them differ in "
                                    f"the first 6 significant digits"
                                )
        return list(out.values())


def _same_sparsity(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9


def pair_siblings(specs: list[RunSpec], cfg: SiblingSettings, where: str = "[siblings]") -> tuple[dict[str, Sibling], list[RunSpec]]:
    """Pair every pruned unstructured run of ``specs`` with its n:m sibling (``cfg.pattern``).

    A run is paired only when its sparsity equals the pattern's (``1 - n/m``): the comparison is at
    EQUAL sparsity, so a 60 % run has no 2:4 sibling.  In order of preference the sibling is
    ``cfg.pairs[run]`` (must be an n:m run of ``specs`` with the same sparsity and weight bits), the
    same method and weight bits at ``cfg.pattern`` when ``specs`` has it, else ``cfg.fallback`` at
    ``cfg.pattern`` and the same weight bits — a run appended to the returned list when ``specs``
    lacks it.  A pairing that names no such run is a UserError naming the key.
    """
    if not cfg.enabled:
        return {}, []
    by_name = {s.name: s for s in specs}
    unstructured = {s.name: s for s in specs if not s.dense and s.pattern == "unstructured"}
    out: dict[str, Sibling] = {}
    for run, sib in cfg.pairs.items():
        u, s = unstructured.get(run), by_name.get(sib)
        if u is None:
            raise UserError(f"{where}.pairs.{run}: not a pruned unstructured run of this experiment (those: {', '.join(unstructured) or 'none'})")
        nm = [n for n, x in by_name.items() if x.pattern != "unstructured" and _same_sparsity(x.sparsity, u.sparsity) and x.wbits == u.wbits]
        if s is None or s.name not in nm:
            raise UserError(
                f"{where}.pairs.{run}: {sib!r} is not an n:m run of this experiment at {run}'s sparsity "
                f"{u.sparsity:g} and {u.wbits} weight bits (those: {', '.join(nm) or 'none'})"
            )
        out[run] = Sibling(run, sib, "configured")
    target = pattern_sparsity(cfg.pattern)
    added: list[RunSpec] = []
    for u in unstructured.values():
        if u.name in out or not _same_sparsity(u.sparsity, target):
            continue
        same = run_name(u.method, target, cfg.pattern, u.wbits)
        if same in by_name:
            sib = by_name[same]
        else:
            sib = RunSpec(run_name(cfg.fallback, target, cfg.pattern, u.wbits), cfg.fallback, target, cfg.pattern, u.wbits)
            if sib.name not in by_name:
                by_name[sib.name] = sib
                added.append(sib)
        why = "same-method" if sib.method == u.method else "fallback"  # e.g. a Wanda run's added Wanda 2:4 is its own method
        out[u.name] = Sibling(u.name, sib.name, why, added=sib in added)
    return out, added


def _parse_siblings(tbl: Any, where: str) -> SiblingSettings:
    cfg = build(SiblingSettings, tbl, where)
    cfg = dataclasses.replace(cfg, pattern=format_nm(*parse_nm(cfg.pattern, f"{where}.pattern")))
    if cfg.fallback not in KNOWN_METHODS or cfg.fallback == "dense":
        raise UserError(f"{where}.fallback: unknown method {cfg.fallback!r} (known: {', '.join(KNOWN_METHODS[1:])})")
    for k, v in cfg.pairs.items():
        if not isinstance(v, str):
            raise UserError(f"{where}.pairs.{k}: expected a run name (a string), got {type(v).__name__} {v!r}")
    return cfg


def run_name(method: str, sparsity: float, pattern: str, wbits: int, tag: str = "") -> str:
    """``besa-s50``, ``wanda-s50-2x4``, ``wanda-s75-1x4``, ``besa-s50-w4``, ``besa-admm-s50`` (tag
    ``admm``): the run's folder name.

    ``s<percent>`` is always the fraction PRUNED; ``<n>x<m>`` = n KEPT of every m (so 1:4 is s75)."""
    method = f"{method}-{tag}" if tag else method
    name = f"{method}-s{round(sparsity * 100):d}" if round(sparsity * 100) == sparsity * 100 else f"{method}-s{sparsity:g}"
    if pattern != "unstructured":
        name += "-" + pattern.replace(":", "x")
    if wbits != 16:
        name += f"-w{wbits}"
    return name


def sim_label(preset: str) -> str:
    """The name of a preset's simulation folders (``sim/<label>-<mode>``): the preset's name, or a
    preset FILE's stem (a path never becomes nested folders)."""
    return Path(preset).stem if preset.endswith(".toml") or "/" in preset else preset


def parse_experiment(obj: dict[str, Any], source: str = "experiment", base: Path | None = None) -> Experiment:
    """Validate a parsed experiment TOML.  Paths in it (the model when it is a directory or a file, a
    preset file) are relative to ``base``, the experiment file's folder."""
    """Validate a parsed experiment TOML (see the module docstring)."""
    known = {"experiment", "calibration", "eval", "runs", "simulate", "options", "whatif", "siblings"}
    for key in obj:
        if key not in known:
            raise UserError(f"{source}: {key}: unknown key (known: {', '.join(sorted(known))})")
    exp = build(ExperimentSection, obj.get("experiment", {}), f"{source}: [experiment]")
    if base is not None and not Path(exp.model).is_absolute() and path_from_file(exp.model, base).exists():
        exp = dataclasses.replace(exp, model=str(resolve_path(path_from_file(exp.model, base))))
    cal = build(Calibration, obj.get("calibration", {}), f"{source}: [calibration]")
    ev = build(EvalSettings, obj.get("eval", {}), f"{source}: [eval]")
    for where, v, lo, hi in (
        ("[calibration].nsamples", cal.nsamples, 1, 1 << 16),
        ("[calibration].seqlen", cal.seqlen, 8, 1 << 17),
        ("[eval].seqlen", ev.seqlen, 8, 1 << 17),
        ("[eval].max_windows", ev.max_windows, 0, 1 << 31),
        ("[eval].hellaswag", ev.hellaswag, 0, HELLASWAG_TASKS),
        ("[experiment].seed", exp.seed, 0, (1 << 63) - 1),
    ):
        if v < lo:
            raise UserError(f"{source}: {where}: must be >= {lo}, got {v}")
        if v > hi:  # the same bounds `besa prune` checks: refused here, before any step runs
            raise UserError(f"{source}: {where}: must be <= {hi}, got {v}")
    runs_tbl = obj.get("runs")
    if runs_tbl is None:
        raise UserError(f"{source}: [[runs]]: missing (give at least one grid of methods)")
    if not isinstance(runs_tbl, list) or not runs_tbl:
        raise UserError(f"{source}: [[runs]]: expected one or more [[runs]] tables")
    grids = []
    for i, t in enumerate(runs_tbl):
        where = f"{source}: [[runs]][{i}]"
        g = build(RunGrid, t, where)
        for j, m in enumerate(g.methods):
            if m not in KNOWN_METHODS:
                raise UserError(f"{where}.methods[{j}]: unknown method {m!r} (known: {', '.join(KNOWN_METHODS)})")
        for j, s in enumerate(g.sparsities):
            check_target(s, f"{where}.sparsities[{j}]")
        nm = [parse_pattern(p, f"{where}.patterns[{j}]") for j, p in enumerate(g.patterns)]
        g = dataclasses.replace(g, patterns=tuple("unstructured" if x is None else format_nm(*x) for x in nm))
        if "sparsities" in t and "unstructured" not in g.patterns:
            implied = {round(pattern_sparsity(p), 9) for p in g.patterns}
            for j, s in enumerate(g.sparsities):
                if round(s, 9) not in implied:
                    raise UserError(
                        f"{where}.sparsities[{j}]: {s:g} is not the sparsity of any of its n:m patterns "
                        f"({', '.join(f'{p} = {pattern_sparsity(p):g}' for p in g.patterns)}; n:m = n KEPT of m); drop `sparsities`"
                    )
        for j, b in enumerate(g.wbits):
            if not 2 <= b <= 16:
                raise UserError(f"{where}.wbits[{j}]: weight bits must be in 2..16 (16 = no quantization), got {b}")
        if g.tag and not re.fullmatch(r"[a-z0-9]{1,32}", g.tag):
            raise UserError(f"{where}.tag: {g.tag!r} must be 1-32 lowercase letters or digits (it goes into folder names)")
        if g.options and not g.tag:
            raise UserError(f'{where}.options: give the grid a tag too (its runs need their own folder name, e.g. tag = "admm" -> besa-admm-s50)')
        if g.options and "dense" in g.methods:
            raise UserError(f"{where}.options: the dense run is not pruned; it takes no prune flags")
        _check_flags(g.options, f"{where}.options")
        grids.append(g)
    sim_tbl = obj.get("simulate", [])
    if not isinstance(sim_tbl, list):
        raise UserError(f"{source}: [[simulate]]: expected [[simulate]] tables")
    presets, modes = list_presets(), MODES
    targets = []
    for i, t in enumerate(sim_tbl):
        where = f"{source}: [[simulate]][{i}]"
        s = build(SimTarget, t, where)
        s = dataclasses.replace(s, preset=resolve_preset(s.preset, base))
        if s.preset not in presets and not Path(s.preset).is_file():
            raise UserError(f"{where}.preset: unknown preset {s.preset!r} (known: {', '.join(presets)})")
        for j, m in enumerate(s.modes):
            if m not in modes:
                raise UserError(f"{where}.modes[{j}]: unknown mode {m!r} (known: {', '.join(modes)})")
        for j, n in enumerate(s.tokens):
            if n < 1:
                raise UserError(f"{where}.tokens[{j}]: token counts must be >= 1, got {n}")
        targets.append(s)
    options = obj.get("options", {})
    if not isinstance(options, dict):
        raise UserError(f"{source}: [options]: expected tables [options.<method>]")
    for m, tbl in options.items():
        if m not in KNOWN_METHODS or m == "dense":
            raise UserError(f"{source}: [options].{m}: unknown method {m!r} (known: {', '.join(KNOWN_METHODS[1:])})")
        if not isinstance(tbl, dict):
            raise UserError(f"{source}: [options].{m}: expected a table of flag = value")
        _check_flags(tbl, f"{source}: [options.{m}]")
    whatif = None
    if "whatif" in obj:
        whatif = _parse_whatif(obj["whatif"], exp.seed, f"{source}: [whatif]", base)
    siblings = _parse_siblings(obj.get("siblings", {}), f"{source}: [siblings]")
    ex = Experiment(exp, cal, ev, tuple(grids), tuple(targets), dict(options), whatif, source, siblings)
    names = [r.name for r in ex.run_specs()]  # also checks [siblings].pairs
    if whatif is not None and whatif.run not in names:
        raise UserError(f"{source}: [whatif].run: {whatif.run!r} is not a run of this experiment (runs: {', '.join(names)})")
    return ex


def _check_flags(tbl: dict, where: str) -> None:
    for k, v in tbl.items():
        if not isinstance(v, (str, int, float, bool)):
            raise UserError(f"{where}.{k}: expected a string, number or boolean, got {type(v).__name__}")


def _parse_whatif(tbl: Any, seed: int, where: str, base: Path | None = None) -> WhatIf:
    """[whatif] with the checks ``besa sweep`` makes on a sweep file (the same functions): preset,
    mode, token counts, every grid field and value, and ``workers`` (>= 0; 0 = serially)."""
    w = build(WhatIf, tbl, where)
    w = dataclasses.replace(w, preset=resolve_preset(w.preset, base))
    check_settings(SweepSettings(preset=w.preset, mode=w.mode, tokens=w.tokens, seed=seed), where)
    if not w.grid:
        raise UserError(f"{where}.grid: empty (give hardware field = [values])")
    check_grid(w.preset, w.grid, f"{where}.grid")
    check_workers(w.workers, f"{where}.workers")
    return w


def load_experiment(path: str | Path) -> Experiment:
    path = Path(path)
    return parse_experiment(read_toml(path), source=str(path), base=resolve_path(path.parent))


def option_flags(options: dict[str, Any]) -> list[str]:
    """``{"d_coef": 5, "smoothing": false}`` -> ``["--d-coef", "5", "--no-smoothing"]`` (booleans as switches)."""
    flags: list[str] = []
    for k, v in options.items():
        flag = "--" + k.replace("_", "-")
        if v is True:
            flags.append(flag)
        elif v is False:
            flags.append("--no-" + k.replace("_", "-"))
        else:
            flags += [flag, str(v)]
    return flags


__all__ = [
    "Experiment",
    "RunSpec",
    "Sibling",
    "SiblingSettings",
    "pair_siblings",
    "load_experiment",
    "parse_experiment",
    "sim_label",
    "run_name",
    "pattern_sparsity",
    "option_flags",
    "KNOWN_METHODS",
    "check_value",
]
