"""The report's table files: ``table.csv`` (every tidy row), ``summary.csv`` (whole-model totals),
``siblings.csv`` (unstructured vs its n:m sibling, when runs are paired), ``hellaswag_pairs.csv``
(paired HellaSwag differences, when runs were scored on it) and ``report.md`` (the same tables in
Markdown), from the tidy table of :func:`reports.table.build_table`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from besa_common.fileio import atomic_write_text
from reports.fmt import cell as fmt_cell
from reports.pplci import CAPTION as PAIRS_CAPTION
from reports.pplci import display_pairs, ranking_lines
from reports.sensitivity import CAPTION as SENS_CAPTION
from reports.sensitivity import display_table as display_sensitivity
from reports.siblings import display_table, sibling_table, verdicts
from reports.table import glance_table, summary_table
from reports.zeroshot import CAPTION as ZS_CAPTION
from reports.zeroshot import display_pairs as display_zs_pairs


def to_markdown(df: pd.DataFrame, floatfmt: str | None = None) -> str:
    """A GitHub-flavoured Markdown table (no extra dependency), numbers made readable by :func:`reports.fmt.cell`."""
    cols = list(df.columns)

    def cell(col: str, v: Any) -> str:
        if floatfmt and isinstance(v, float) and not math.isnan(v):
            return format(v, floatfmt)
        return fmt_cell(col, v).replace("|", "\\|")

    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(cell(c, v) for c, v in zip(cols, row)) + " |")
    return "\n".join(lines) + "\n"


SUMMARY_SHOW = (
    "label",
    "method",
    "sparsity",
    "pattern",
    "wbits",
    "realised_sparsity",
    "ppl",
    "preset",
    "mode",
    "tokens",
    "cycles",
    "dense_cycles",
    "speedup",
    "speedup_vs_nm",
    "energy_vs_dense",
)


def write_tables(
    df: pd.DataFrame,
    out: str | Path,
    pairs: pd.DataFrame | None = None,
    zs_pairs: pd.DataFrame | None = None,
    sensitivity: pd.DataFrame | None = None,
) -> dict[str, Path]:
    """Write ``OUT/table.csv`` (every tidy row), ``OUT/summary.csv``, ``OUT/report.md``, when some run
    has an n:m sibling ``OUT/siblings.csv`` (:func:`reports.siblings.sibling_table`), when ``pairs``
    (:func:`reports.pplci.pairs_table`) has rows ``OUT/ppl_pairs.csv``, and when ``zs_pairs``
    (:func:`reports.zeroshot.pairs_table`) has rows ``OUT/hellaswag_pairs.csv``, atomically.  A
    ``siblings.csv``, ``ppl_pairs.csv`` or ``hellaswag_pairs.csv`` of an earlier report that no longer
    applies is removed.  ``sensitivity`` (:func:`reports.sensitivity.sensitivity_table`) rows become a
    section of report.md."""
    out = Path(out)
    summ = summary_table(df)
    sib = sibling_table(summ)
    paths = {"table": out / "table.csv", "summary": out / "summary.csv", "markdown": out / "report.md"}
    atomic_write_text(paths["table"], df.to_csv(index=False))
    atomic_write_text(paths["summary"], summ.to_csv(index=False))
    if not sib.empty:
        paths["siblings"] = out / "siblings.csv"
        atomic_write_text(paths["siblings"], sib.to_csv(index=False))
    elif (out / "siblings.csv").is_file():
        (out / "siblings.csv").unlink()
    have_pairs = pairs is not None and not pairs.empty
    if have_pairs:
        paths["ppl_pairs"] = out / "ppl_pairs.csv"
        atomic_write_text(paths["ppl_pairs"], pairs.to_csv(index=False))
    elif (out / "ppl_pairs.csv").is_file():
        (out / "ppl_pairs.csv").unlink()
    have_zs = zs_pairs is not None and not zs_pairs.empty
    if have_zs:
        paths["hellaswag_pairs"] = out / "hellaswag_pairs.csv"
        atomic_write_text(paths["hellaswag_pairs"], zs_pairs.to_csv(index=False))
    elif (out / "hellaswag_pairs.csv").is_file():
        (out / "hellaswag_pairs.csv").unlink()
    show = [c for c in SUMMARY_SHOW if c in summ.columns]
    md = "# besa report\n\n## At a glance\n\n" + to_markdown(glance_table(summ))
    if have_pairs:
        md += (
            "\n## Perplexity: paired differences\n\n"
            + PAIRS_CAPTION
            + "\n\n"
            + "".join(f"- {l}\n" for l in ranking_lines(pairs))
            + "\n"
            + to_markdown(display_pairs(pairs))
        )
    if have_zs:
        md += "\n## HellaSwag: paired differences\n\n" + ZS_CAPTION + "\n\n" + to_markdown(display_zs_pairs(zs_pairs))
    if not sib.empty:
        md += (
            "\n## Unstructured vs its n:m sibling (equal sparsity)\n\n"
            "Unstructured run on the sparse engine (cycle mode) vs its n:m sibling on the n:m engine, same machine, "
            "sparsity and weight bits.\n\n" + "".join(f"- {l}\n" for l in verdicts(sib)) + "\n" + to_markdown(display_table(sib))
        )
    if sensitivity is not None and not sensitivity.empty:
        md += "\n## Which guesses decide the answer\n\n" + SENS_CAPTION + "\n\n" + to_markdown(display_sensitivity(sensitivity))
    md += "\n## Every simulation\n\nWhole-model totals (summary.json of each simulation; speedup = dense cycles / cycles).\n\n" + to_markdown(summ[show])
    atomic_write_text(paths["markdown"], md)
    return paths
