"""The report's "which guesses decide the answer" table: ``besa simulate --sensitivity`` results.

A simulation run with ``--sensitivity`` keeps, in its ``summary.json``, every guessed preset field
at both ends of its plausible range (:func:`simulator.sensitivity.sensitivity_record`).
:func:`sensitivity_table` gathers them over the report's runs: one row per run, machine and guessed
field, with the field's two end values, the largest relative move of the speedup vs dense and of the
energy vs dense (and at which token count), and whether it decides the answer (moves either by more
than the run's threshold).  The page and report.md show it; nothing else reads it.
"""

from __future__ import annotations

import pandas as pd

from reports.table import RunInfo

CAPTION = (
    "Each preset field marked as a guess (its [guesses] table) was re-simulated at both ends of its plausible range "
    "(besa simulate --sensitivity). Moves are relative to the headline speedup / energy vs dense; a field that moves "
    "either by more than the threshold decides the answer: the headline then depends on a number nobody measured."
)
COLUMNS = ["run", "machine", "field", "range", "speedup move", "at N (speedup)", "energy move", "at N (energy)", "decides", "note"]


def _largest(rows: list[dict], key: str) -> tuple[float | None, int | None]:
    have = [r for r in rows if r.get(key) is not None]
    if not have:
        return None, None
    r = max(have, key=lambda r: abs(r[key]))
    return r[key], r["tokens"]


def sensitivity_table(runs: list[RunInfo]) -> pd.DataFrame:
    """One row per run x simulated machine x guessed field (empty when no simulation ran with --sensitivity)."""
    out = []
    for run in runs:
        for machine, (_, summary) in sorted(run.sims.items()):
            rec = (summary or {}).get("sensitivity")
            if not isinstance(rec, dict):
                continue
            deciding = set(rec.get("deciding") or [])
            by_field: dict[str, list[dict]] = {}
            for v in rec.get("variations") or []:
                by_field.setdefault(str(v.get("field")), []).append(v)
            for name, rows in by_field.items():
                ends = {r.get("end"): r.get("value") for r in rows}
                ds, ns = _largest([r for r in rows if not r.get("error")], "d_speedup")
                de, ne = _largest([r for r in rows if not r.get("error")], "d_energy")
                errors = sorted({r["error"] for r in rows if r.get("error")})
                out.append(
                    {
                        "run": run.label or run.name,
                        "machine": machine,
                        "field": name,
                        "range": f"{ends.get('low', '?'):g} .. {ends.get('high', '?'):g}"
                        if all(isinstance(ends.get(e), (int, float)) for e in ("low", "high"))
                        else "",
                        "speedup move": ds,
                        "at N (speedup)": ns,
                        "energy move": de,
                        "at N (energy)": ne,
                        "decides": name in deciding,
                        "note": ("impossible at one end: " + errors[0]) if errors else "",
                    }
                )
    return pd.DataFrame(out, columns=COLUMNS)


def display_table(df: pd.DataFrame) -> pd.DataFrame:
    """The table with the moves as signed percentages and the decides flag as a word."""
    shown = df.copy()
    for col in ("speedup move", "energy move"):
        shown[col] = [("" if v is None or v != v else f"{v:+.1%}") for v in df[col]]
    for col in ("at N (speedup)", "at N (energy)"):
        shown[col] = [("" if v is None or v != v else str(int(v))) for v in df[col]]
    shown["decides"] = ["yes" if d else "" for d in df["decides"]]
    if not shown["note"].astype(bool).any():
        shown = shown.drop(columns=["note"])
    return shown
