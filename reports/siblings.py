"""Unstructured on the sparse engine vs its equal-sparsity n:m sibling on the n:m engine.

``besa run`` pairs every pruned unstructured run with an n:m run of the SAME sparsity and weight bits
(its own method at 2:4 when the experiment has it, else Wanda 2:4 on the same calibration) and writes
the pairing to ``RUN/sibling.json``; it simulates the sibling in mode ``nm`` (the machine's n:m
engine) on every preset it simulates in ``cycle`` mode.  This module reads those run directories
(through :func:`reports.table.summary_table`, i.e. summary.json totals) and answers, per machine and
token count: which runs faster, and at what perplexity.

:func:`sibling_table` -> one row per (unstructured run, preset, tokens):

* ``speedup`` — the unstructured run in ``cycle`` mode (its sparse engine), Σ dense cycles / Σ cycles;
* ``sibling_speedup`` — the sibling in mode ``nm`` on the same preset and N, against its own dense
  baseline (the same dense machine: ``dense_cycles`` and ``sibling_dense_cycles`` are equal when both
  simulations ran with the same weight width, which the pairing guarantees);
* ``speed_ratio`` = sibling_cycles / cycles (> 1 = the unstructured run is faster), ``faster``
  (``unstructured``, the sibling's pattern, e.g. ``2:4``, or ``tie``);
* ``ppl``, ``sibling_ppl`` and ``lower_ppl`` (which is better, same naming);
* ``note`` — why a comparison is missing (the sibling not loaded, or not simulated on that machine).

Only ``cycle``-mode simulations of the unstructured run are paired: the compute-only formulas
(``besa-compat`` ...) have no n:m counterpart with the same dense baseline.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from reports.table import phase_of

SPARSE_MODE = "cycle"  # the unstructured run's simulation that is compared
NM_MODE = "nm"  # the sibling's: the n:m engine
COLUMNS = [
    "label",
    "experiment",
    "run",
    "method",
    "sparsity",
    "wbits",
    "sibling",
    "sibling_method",
    "sibling_pattern",
    "why",
    "preset",
    "tokens",
    "phase",
    "cycles",
    "sibling_cycles",
    "dense_cycles",
    "sibling_dense_cycles",
    "speedup",
    "sibling_speedup",
    "speed_ratio",
    "faster",
    "ppl",
    "sibling_ppl",
    "lower_ppl",
    "energy_vs_dense",
    "sibling_energy_vs_dense",
    "note",
]
TIE_REL = 1e-9  # relative difference below which two numbers are a tie


def _better(a: float, b: float, first: str, second: str, higher_wins: bool) -> str | None:
    """``first`` if ``a`` wins, ``second`` if ``b`` does, ``tie`` within :data:`TIE_REL`, None if either is missing."""
    if a is None or b is None or pd.isna(a) or pd.isna(b):
        return None
    if abs(a - b) <= TIE_REL * max(abs(a), abs(b)):
        return "tie"
    return first if (a > b) == higher_wins else second


def _num(row, col: str) -> float:
    v = row.get(col) if hasattr(row, "get") else None
    return float(v) if v is not None and pd.notna(v) else math.nan


def sibling_table(summ: pd.DataFrame) -> pd.DataFrame:
    """The comparison (see the module docstring) from a :func:`reports.table.summary_table` frame."""
    if summ.empty or "sibling" not in summ.columns:
        return pd.DataFrame(columns=COLUMNS)
    paired = summ[summ["sibling"].notna() & (summ["pattern"] == "unstructured")]
    if paired.empty:
        return pd.DataFrame(columns=COLUMNS)
    known = {(e, r): g for (e, r), g in summ.groupby(["experiment", "run"], sort=False)}
    cycle_tokens = summ[summ["mode"] == SPARSE_MODE].groupby("preset")["tokens"].unique()
    rows = []
    for (exp, run), g in paired.groupby(["experiment", "run"], sort=False):
        first = g.iloc[0]
        sib_name = first["sibling"]
        sib = known.get((exp, sib_name))
        base = {
            "label": first["label"],
            "experiment": exp,
            "run": run,
            "method": first["method"],
            "sparsity": first["sparsity"],
            "wbits": first["wbits"],
            "sibling": sib_name,
            "why": first.get("sibling_why"),
            "ppl": _num(first, "ppl"),
        }
        if sib is not None:
            s0 = sib.iloc[0]
            base.update(sibling_method=s0["method"], sibling_pattern=s0["pattern"], sibling_ppl=_num(s0, "ppl"))
        sims = g[(g["mode"] == SPARSE_MODE) & g["cycles"].notna()]
        if sims.empty:
            note = "no cycle-mode simulation of this run" if sib is not None else f"sibling {sib_name} is not among the loaded runs"
            rows.append(dict(base, note=note))
            continue
        for _, u in sims.iterrows():
            r = dict(base, preset=u["preset"], tokens=u["tokens"], cycles=u["cycles"], dense_cycles=u["dense_cycles"], speedup=u["speedup"])
            r["phase"] = phase_of(u["tokens"], cycle_tokens.get(u["preset"], [u["tokens"]]))
            r["energy_vs_dense"] = _num(u, "energy_vs_dense")
            if sib is None:
                r["note"] = f"sibling {sib_name} is not among the loaded runs"
            else:
                m = sib[(sib["mode"] == NM_MODE) & (sib["preset"] == u["preset"]) & (sib["tokens"] == u["tokens"]) & sib["cycles"].notna()]
                if m.empty:
                    r["note"] = f"sibling {sib_name} has no n:m-engine simulation (sim/{u['preset']}-{NM_MODE}) at N = {int(u['tokens'])}"
                else:
                    s = m.iloc[0]
                    r.update(sibling_cycles=s["cycles"], sibling_dense_cycles=s["dense_cycles"], sibling_speedup=s["speedup"])
                    r["sibling_energy_vs_dense"] = _num(s, "energy_vs_dense")
                    r["speed_ratio"] = s["cycles"] / u["cycles"] if u["cycles"] else math.nan
            rows.append(r)
    out = pd.DataFrame(rows)
    for c in COLUMNS:
        if c not in out.columns:
            out[c] = None
    out = out[COLUMNS]
    for c in ("cycles", "sibling_cycles", "dense_cycles", "sibling_dense_cycles", "speedup", "sibling_speedup", "speed_ratio", "ppl", "sibling_ppl", "tokens"):
        out[c] = pd.to_numeric(out[c], errors="coerce")
    pat = out["sibling_pattern"].fillna("n:m")
    out["faster"] = [_better(a, b, "unstructured", p, True) for a, b, p in zip(out["speedup"], out["sibling_speedup"], pat)]
    out["lower_ppl"] = [_better(a, b, "unstructured", p, False) for a, b, p in zip(out["ppl"], out["sibling_ppl"], pat)]
    return out


def verdicts(sib: pd.DataFrame) -> list[str]:
    """One sentence per (preset, phase): how many pairs each engine wins (ties counted), by how much,
    the winner (the side that wins more pairs), and which side has the lower perplexity how often."""
    done = sib.dropna(subset=["speed_ratio"])
    lines = []
    for (preset, phase), g in done.groupby(["preset", "phase"], sort=False):
        n = len(g)
        pat = "/".join(sorted(set(g["sibling_pattern"].dropna()))) or "n:m"
        n_u = int((g["faster"] == "unstructured").sum())
        n_t = int((g["faster"] == "tie").sum())
        n_s = n - n_u - n_t
        ratio = g["speed_ratio"].to_numpy(float)
        if n_u > n_s:
            winner = "unstructured on the sparse engine"
        elif n_s > n_u:
            winner = f"the {pat} sibling on the n:m engine"
        else:
            winner = "neither (as many pairs each)"
        better_ppl = int((g["lower_ppl"] == "unstructured").sum())
        lines.append(
            f"{preset} {phase} (N = {int(g['tokens'].iloc[0])}), {n} pair(s): faster is {winner} — unstructured faster in {n_u}, "
            f"{pat} faster in {n_s}, tied in {n_t}; sibling cycles / unstructured cycles {float(np.min(ratio)):.3f}–{float(np.max(ratio)):.3f} "
            f"(> 1 = unstructured faster); unstructured has the lower perplexity in {better_ppl} of {n}."
        )
    return lines


DISPLAY = {
    "label": "run",
    "sibling": "2:4 sibling",
    "why": "paired as",
    "preset": "machine",
    "phase": "phase",
    "tokens": "N",
    "speedup": "speedup ×",
    "sibling_speedup": "sibling speedup ×",
    "speed_ratio": "sibling cycles / run cycles",
    "faster": "faster",
    "ppl": "ppl",
    "sibling_ppl": "sibling ppl",
    "lower_ppl": "lower ppl",
    "note": "note",
}


def display_table(sib: pd.DataFrame) -> pd.DataFrame:
    """The columns the page and report.md show, with readable headers (the note only when some row has one)."""
    cols = [c for c in DISPLAY if c != "note" or sib["note"].notna().any()]
    return sib[cols].rename(columns=DISPLAY)


__all__ = ["sibling_table", "verdicts", "display_table", "COLUMNS"]
