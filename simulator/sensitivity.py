"""Which guesses decide the answer: the headline re-run with every guessed preset field at its range ends.

A preset marks the fields whose value is a guess in its ``[guesses]`` table, each with its plausible
range as ``[low, high]`` MULTIPLES of the machine's value (so the range follows ``--set`` overrides and
derived values such as ``banks = 0``); a preset with a ``base`` inherits the base's guesses and adds its
own.  :func:`sensitivity` simulates the workload on the machine with each guessed field at each end
(mask statistics computed once and reused) and reports, per token count, how far the speedup vs dense
and the energy vs dense move; :func:`deciding` names those that move either by more than a threshold.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from typing import Any

from besa_common.errors import UserError
from simulator.hardware import GUESSES_TABLE, Hardware, hardware_builder, preset_path
from simulator.run import simulate, workload_stats
from simulator.totals import model_totals

DEFAULT_THRESHOLD = 0.05  # a guess "decides" the answer when it moves speedup or energy by more than 5 %


def guesses(name_or_path: str) -> dict[str, tuple[float, float]]:
    """``field -> (low, high)`` multiples of the guessed fields of a preset, its base's included."""
    path = preset_path(name_or_path)
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    base = raw.get("base")
    out: dict[str, tuple[float, float]] = {}
    if isinstance(base, str) and base.strip():
        out.update(guesses(str(path.parent / base) if base.endswith(".toml") else base))
    known = {f.name for f in fields(Hardware)}
    for key, rng in (raw.get(GUESSES_TABLE) or {}).items():
        where = f"{path.name}: [{GUESSES_TABLE}].{key}"
        if key not in known:
            raise UserError(f"{where}: unknown hardware field")
        if not (isinstance(rng, list) and len(rng) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in rng)):
            raise UserError(f"{where}: expected [low, high] multiples of the value, got {rng!r}")
        lo, hi = float(rng[0]), float(rng[1])
        if not 0 < lo <= 1 <= hi:
            raise UserError(f"{where}: expected 0 < low <= 1 <= high, got [{lo:g}, {hi:g}]")
        out[key] = (lo, hi)
    return out


@dataclass(frozen=True)
class Variation:
    field: str
    end: str  # "low" / "high"
    value: Any  # the field's value at that end
    tokens: int
    speedup: float
    energy_vs_dense: float | None
    d_speedup: float  # relative change vs the headline
    d_energy: float | None
    error: str | None = None  # the machine at this end is impossible (its one-line reason)


def _scaled(hw: Hardware, field: str, factor: float) -> Any:
    v = getattr(hw, field)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise UserError(f"[{GUESSES_TABLE}].{field}: only numeric fields can be guessed, got {v!r}")
    return max(1, round(v * factor)) if isinstance(v, int) else v * factor


def _headline(layers, hw: Hardware, mode: str, tokens: list[int], stats, engine) -> dict[int, tuple[float, float | None]]:
    df = simulate(layers, hw, mode, tokens, engine=engine, stats=stats)
    out = {}
    for t, tot in zip(tokens, model_totals(df, tokens)):
        out[t] = (tot.get("speedup_vs_dense", float("nan")), tot.get("energy_vs_dense"))
    return out


def sensitivity(
    layers, preset: str, overrides: dict[str, Any] | None, mode: str, tokens: list[int], engine: str | None = None
) -> tuple[dict[int, tuple[float, float | None]], list[Variation]]:
    """(the headline per token count, every guessed field at each end of its range)."""
    ranges = guesses(preset)
    build = hardware_builder(preset)
    overrides = dict(overrides or {})
    hw = build(overrides or None)
    stats = workload_stats(layers)
    base = _headline(layers, hw, mode, tokens, stats, engine)
    out = []
    for field, (lo, hi) in ranges.items():
        for end, factor in (("low", lo), ("high", hi)):
            value = _scaled(hw, field, factor)
            try:
                res = _headline(layers, build({**overrides, field: value}), mode, tokens, stats, engine)
            except UserError as exc:
                out += [Variation(field, end, value, t, float("nan"), None, float("nan"), None, str(exc)) for t in tokens]
                continue
            for t in tokens:
                (s0, e0), (s1, e1) = base[t], res[t]
                de = (e1 / e0 - 1.0) if e0 and e1 is not None else None
                out.append(Variation(field, end, value, t, s1, e1, s1 / s0 - 1.0, de))
    return base, out


def deciding(variations: list[Variation], threshold: float = DEFAULT_THRESHOLD) -> list[str]:
    """The guessed fields that move the speedup or the energy by more than ``threshold`` (relative), in
    order of the largest move."""
    worst: dict[str, float] = {}
    for v in variations:
        move = max(abs(v.d_speedup) if v.d_speedup == v.d_speedup else 0.0, abs(v.d_energy or 0.0))
        worst[v.field] = max(worst.get(v.field, 0.0), move)
    return [f for f, m in sorted(worst.items(), key=lambda kv: -kv[1]) if m > threshold]


def sensitivity_record(variations: list[Variation], threshold: float = DEFAULT_THRESHOLD) -> dict[str, Any]:
    """summary.json's ``sensitivity``: the threshold, the deciding fields and every variation."""
    rows = []
    for v in variations:
        row = {k: getattr(v, k) for k in ("field", "end", "value", "tokens", "speedup", "energy_vs_dense", "d_speedup", "d_energy", "error")}
        rows.append({k: (None if isinstance(x, float) and x != x else x) for k, x in row.items()})  # strict JSON: no NaN
    return {"threshold": threshold, "deciding": deciding(variations, threshold), "variations": rows}


def report_lines(base, variations: list[Variation], threshold: float = DEFAULT_THRESHOLD) -> list[str]:
    """What ``besa simulate --sensitivity`` prints: per guessed field, its range and its largest move of
    the speedup and of the energy vs dense (token count, end), flagged above ``threshold``; then the
    fields that decide the answer."""
    lines = [f"sensitivity to the preset's guesses (each at both ends of its plausible range; threshold {threshold:.0%}):"]
    by_field: dict[str, list[Variation]] = {}
    for v in variations:
        by_field.setdefault(v.field, []).append(v)
    for field, vs in by_field.items():
        ends = " .. ".join(f"{v.value:g}" for v in vs if v.tokens == vs[0].tokens)
        bad = [v for v in vs if v.error]
        ok = [v for v in vs if not v.error]
        parts = []
        if ok:
            s = max(ok, key=lambda v: abs(v.d_speedup))
            parts.append(f"speedup {base[s.tokens][0]:.3f}x -> {s.speedup:.3f}x ({s.d_speedup:+.1%}) at {s.value:g}, N={s.tokens}")
            withe = [v for v in ok if v.d_energy is not None]
            if withe:
                e = max(withe, key=lambda v: abs(v.d_energy))
                parts.append(f"energy vs dense {base[e.tokens][1]:.3f}x -> {e.energy_vs_dense:.3f}x ({e.d_energy:+.1%}) at {e.value:g}, N={e.tokens}")
        if bad:
            parts.append(f"impossible at {bad[0].value:g} ({bad[0].error})")
        flag = "  <- decides" if field in deciding(vs, threshold) else ""
        lines.append(f"  {field} [{ends}]: {'; '.join(parts)}{flag}")
    names = deciding(variations, threshold)
    lines.append(
        f"guesses that move speedup or energy by more than {threshold:.0%}: {', '.join(names)}"
        if names
        else f"no guess moves speedup or energy by more than {threshold:.0%}"
    )
    return lines
