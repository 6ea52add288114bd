"""The report page: one self-contained HTML file (figures embedded as PNG), plus every figure as a
file for papers.

``render_report(runs, out_dir, sweep=None, formats=("svg",))`` writes:

* ``OUT/report.html`` — a table of contents, the "at a glance" table (one row per run: realised
  sparsity, perplexity, decode / prefill speedup per machine, energy when simulated), flags the
  reader must not miss, every figure of :func:`reports.figures.build_figures` with its caption,
  the table of every simulation, and the gaps found in the run directories;
* ``OUT/figures/<figure id>.<fmt>`` for every drawn figure and every format in ``formats``
  (``svg`` always; ``pdf`` / ``png`` on request);
* ``OUT/table.csv``, ``OUT/summary.csv``, ``OUT/report.md`` and, when runs are paired with an n:m
  sibling, ``OUT/siblings.csv`` (:func:`reports.writers.write_tables`, :mod:`reports.siblings`); when
  runs were scored on HellaSwag, ``OUT/hellaswag_pairs.csv`` (:mod:`reports.zeroshot`).

Every section has an ``id`` the table of contents links to; a figure with no data keeps its
section and says why, so a partial experiment still gives an honest page.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from besa_common.errors import UserError
from besa_common.fileio import atomic_write_text
from reports.figures import FigureData, build_figures
from reports.fmt import cell
from reports.plotkit import FIGURE_FORMATS, write_figure
from reports.pplci import CAPTION as PAIRS_CAPTION
from reports.pplci import display_pairs, pairs_table, ranking_lines, unpaired_note
from reports.sensitivity import CAPTION as SENS_CAPTION
from reports.sensitivity import display_table as display_sensitivity
from reports.sensitivity import sensitivity_table
from reports.siblings import display_table, sibling_table, verdicts
from reports.table import RunInfo, build_table, glance_table, row_sparsity_table, summary_table
from reports.writers import SUMMARY_SHOW, write_tables
from reports.zeroshot import CAPTION as ZS_CAPTION
from reports.zeroshot import display_pairs as display_zs_pairs
from reports.zeroshot import pairs_table as zs_pairs_table

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.8em;margin:1em 0}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}td{white-space:nowrap}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left;white-space:nowrap}
.wide{overflow-x:auto}.glance td,.glance th{padding:3px 8px;font-size:1.05em}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.4em .8em;margin:.5em 0}
.flag{background:#ffecec;border-left:4px solid #c00000;padding:.4em .8em;margin:.5em 0;color:#700}
.missing{color:#a00}.caption{color:#555;font-size:.9em}img{max-width:100%;height:auto}
nav#toc{background:#f7f7f7;padding:.4em 1em;border:1px solid #e3e3e3}nav#toc li{margin:.1em 0}
figure{margin:1em 0}.files{font-size:.85em}
"""


def _table_html(df: pd.DataFrame, cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(cell(c, v))}</td>" for c, v in zip(df.columns, r)) + "</tr>" for r in df.itertuples(index=False))
    return f"<div class='wide'><table class='{cls}'><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>"


def _siblings_section(summ: pd.DataFrame) -> str:
    """The equal-sparsity comparison (:mod:`reports.siblings`): the verdicts, then the table; "" when no run is paired."""
    sib = sibling_table(summ)
    if sib.empty:
        return ""
    lines = verdicts(sib)
    head = (
        "<p class='caption'>Each pruned unstructured run simulated on the machine's sparse engine (cycle mode) against its n:m "
        "sibling — an n:m run at the SAME sparsity and weight bits (its own method when the experiment has it, else "
        "the fallback method on the same calibration) — simulated on the same machine's n:m engine. Speedups are whole-model, "
        "each against the same dense baseline; faster / lower ppl name the winner. All rows: <code>siblings.csv</code>.</p>"
    )
    body = "".join(f"<p class='note'>{html.escape(l)}</p>" for l in lines)
    return head + body + _table_html(display_table(sib))


def _pairs_section(pairs: pd.DataFrame, note: str) -> str:
    """The paired perplexity comparisons (:mod:`reports.pplci`): the ranking lines, then the table."""
    if pairs.empty:
        return f"<p class='note'>{html.escape(note)}</p>" if note else ""
    lines = "".join(f"<p class='note'>{html.escape(l)}</p>" for l in ranking_lines(pairs))
    extra = f"<p class='note'>{html.escape(note)}</p>" if note else ""
    return f"<p class='caption'>{html.escape(PAIRS_CAPTION)}</p>" + lines + extra + _table_html(display_pairs(pairs))


def _decode_note(summ: pd.DataFrame) -> str:
    """Say that decode is memory-bound and besa-compat is compute-only, next to the numbers."""
    cyc = summ[(summ["mode"] == "cycle") & summ["speedup"].notna() & (summ["method"] != "dense")] if "mode" in summ.columns else summ.iloc[0:0]
    if cyc.empty or cyc["tokens"].nunique() < 2:
        return ""
    lo, hi = cyc["tokens"].min(), cyc["tokens"].max()
    dec = cyc[cyc["tokens"] == lo]["speedup"]
    pre = cyc[cyc["tokens"] == hi]["speedup"]
    return (
        f'<p class="note">Decode (N = {int(lo)}) is usually memory-bound on these presets: its speedup comes from fewer bytes '
        f"(kept values + index metadata), not fewer MACs. Pruned-run speedups here: decode {dec.min():.2f}–{dec.max():.2f}×, "
        f"prefill (N = {int(hi)}) {pre.min():.2f}–{pre.max():.2f}×. The besa-compat mode is compute-only (N = 1, no memory model) "
        f"and reproduces the BESA authors' formula; do not read it as a decode speedup.</p>"
    )


def _figure_block(fd: FigureData, files: dict[str, Path], out_dir: Path) -> str:
    png = base64.b64encode(fd.to_bytes("png")).decode("ascii")
    links = " · ".join(f'<a href="{html.escape(p.relative_to(out_dir).as_posix())}">{fmt.upper()}</a>' for fmt, p in files.items())
    flags = "".join(f"<p class='flag'>⚠ {html.escape(f)}</p>" for f in fd.flags)
    return (
        f'<figure id="figure-{html.escape(fd.fig_id)}"><img id="img-{html.escape(fd.fig_id)}" alt="{html.escape(fd.title)}" '
        f'src="data:image/png;base64,{png}"><figcaption class="caption">{html.escape(fd.caption)}'
        f"{' <span class=files>(' + links + ')</span>' if links else ''}</figcaption></figure>{flags}"
    )


def _header(runs: list[RunInfo], df: pd.DataFrame, sweep: pd.DataFrame | None, title: str, notes: Iterable[str]) -> list[str]:
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<link rel='icon' href='data:,'><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    models = ", ".join(sorted({str(m) for m in df["model"].dropna().unique()})) if not df.empty else ""
    exps = list(dict.fromkeys(r.experiment for r in runs))
    what = (
        f"{len(runs)} run(s) of {html.escape(models or 'unknown model')}"
        + (f" from {len(exps)} experiments ({html.escape(', '.join(exps))})" if len(exps) > 1 else "")
        if runs
        else "what-if sweep results"
    )
    parts.append(
        f"<p>{what}; generated {stamp} by <code>besa report</code>. Sparsity = fraction of weights pruned; speedup = dense "
        "cycles / cycles on the same simulated machine (&gt; 1 = faster); decode = the smallest token count N simulated, "
        "prefill = the largest.</p>"
    )
    if sweep is not None and not sweep.empty:
        bad = sweep[sweep["status"] != "ok"] if "status" in sweep.columns else sweep.iloc[0:0]
        wls = ", ".join(map(str, pd.unique(sweep["workload"]))) if "workload" in sweep.columns else "?"
        msg = f"Sweep: {len(sweep)} points over workload(s) {wls}; {len(bad)} failed"
        if len(bad):
            msg += f" (e.g. {bad['error'].astype(str).iloc[0]}; rerun the sweep to retry them)"
        parts.append(f"<p class='note'>{html.escape(msg)}.</p>")
    if any(r.manifest.get("fixture") for r in runs):
        parts.append('<p class="note">FIXTURE data: hand-made files for tests, not measurements.</p>')
    if "smollm2" in models.lower():
        parts.append(
            '<p class="note">SmolLM2-135M weights come from a Q4_1 GGUF file dequantized to fp32: a trained model with a little quantization noise.</p>'
        )
    parts += [f'<p class="note">{html.escape(n)}</p>' for n in notes]
    return parts


def _gaps(runs: list[RunInfo]) -> str:
    gaps = [(r.label or r.name, m) for r in runs for m in r.missing]
    failures = [
        (r.label or r.name, step, rec.get("error"))
        for r in runs
        for step, rec in (r.status.get("steps") or {}).items()
        if isinstance(rec, dict) and rec.get("error")
    ]
    if not gaps and not failures:
        return ""
    items = [f"<li class='missing'>{html.escape(n)}: {html.escape(m)}</li>" for n, m in gaps]
    items += [f"<li class='missing'>{html.escape(n)}: step {html.escape(s)} failed: {html.escape(str(e))}</li>" for n, s, e in failures]
    return "<ul>" + "".join(items) + "</ul>"


def check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    """SVG always, plus the requested formats (pdf, png); unknown ones are a one-line error."""
    fmts = ["svg"] + [f.strip().lower() for f in formats if f.strip()]
    bad = [f for f in fmts if f not in FIGURE_FORMATS]
    if bad:
        raise UserError(f"--format {bad[0]!r}: choose from {', '.join(FIGURE_FORMATS)}")
    return tuple(dict.fromkeys(fmts))


def render_report(
    runs: list[RunInfo],
    out_dir: str | Path,
    sweep: pd.DataFrame | None = None,
    title: str = "besa report",
    notes: Iterable[str] = (),
    formats: Sequence[str] = ("svg",),
) -> Path:
    """Write the page, the figure files and the tables (see the module docstring); return the HTML path."""
    out_dir = Path(out_dir)
    fmts = check_formats(formats)
    df = build_table(runs) if runs else pd.DataFrame(columns=["model", "experiment"])
    figures = build_figures(df if runs else None, row_sparsity_table(runs) if runs else None, sweep)
    sections: list[tuple[str, str, str]] = []  # (id, title, html)
    if runs:
        zs_pairs = zs_pairs_table(runs)
        pairs = pairs_table(runs)
        sens = sensitivity_table(runs)
        write_tables(df, out_dir, pairs, zs_pairs=zs_pairs, sensitivity=sens)
        summ = summary_table(df)
        sections.append(
            (
                "glance",
                "At a glance",
                "<p class='caption'>One row per run. Speedups are whole-model (Σ dense cycles / Σ cycles) per "
                "simulated machine; energy columns are dense energy / energy (&gt; 1 = less energy than dense), when the simulator reports it.</p>"
                + _table_html(glance_table(summ), "glance")
                + _decode_note(summ),
            )
        )
        ppl_html = _pairs_section(pairs, unpaired_note(runs))
        if ppl_html:
            sections.append(("ppl-pairs", "Perplexity: paired differences", ppl_html))
        if not zs_pairs.empty:
            zs_html = f"<p class='caption'>{html.escape(ZS_CAPTION)}</p>" + _table_html(display_zs_pairs(zs_pairs))
            sections.append(("hellaswag-pairs", "HellaSwag: paired differences", zs_html))
        sib_html = _siblings_section(summ)
        if sib_html:
            sections.append(("sibling-table", "Unstructured vs its n:m sibling", sib_html))
        if not sens.empty:
            sens_html = f"<p class='caption'>{html.escape(SENS_CAPTION)}</p>" + _table_html(display_sensitivity(sens))
            sections.append(("sensitivity", "Which guesses decide the answer", sens_html))
    gaps = _gaps(runs)
    if gaps:
        sections.append(("gaps", "Missing pieces", gaps))
    flags = [f for _, _, fd in figures if isinstance(fd, FigureData) for f in fd.flags]
    by_section: dict[str, list] = {}
    for sec, sec_title, fd in figures:
        by_section.setdefault(sec, [sec_title]).append(fd)
    for sec, (sec_title, *items) in by_section.items():
        blocks = []
        for fd in items:
            if isinstance(fd, FigureData):
                files = {fmt: write_figure(fd, out_dir / "figures", fmt) for fmt in fmts}
                blocks.append(_figure_block(fd, files, out_dir))
            else:
                blocks.append(f'<p class="note missing">Not shown: {html.escape(fd)}</p>')
        sections.append((f"fig-{sec}", sec_title, "".join(blocks)))
    if runs:
        show = [c for c in SUMMARY_SHOW if c in summ.columns]
        sections.append(("summary", "Every simulation", _table_html(summ[show])))
    tables = (
        "Every row of the tidy table: <code>table.csv</code>; whole-model totals: <code>summary.csv</code>; "
        + ("unstructured vs n:m sibling: <code>siblings.csv</code>; " if (out_dir / "siblings.csv").is_file() else "")
        + ("paired perplexity differences: <code>ppl_pairs.csv</code>; " if (out_dir / "ppl_pairs.csv").is_file() else "")
        + ("paired HellaSwag differences: <code>hellaswag_pairs.csv</code>; " if (out_dir / "hellaswag_pairs.csv").is_file() else "")
        + "Markdown: <code>report.md</code>; "
        if runs
        else "The sweep's points: <code>results.parquet</code>; "
    )
    sections.append(
        (
            "files",
            "Files",
            f"<p>{tables}every figure as SVG (and PDF / PNG with <code>--format</code>) in "
            "<code>figures/</code>, next to this page. Regenerate with <code>besa report DIR...</code>.</p>",
        )
    )
    parts = _header(runs, df, sweep, title, notes)
    parts += [f"<p class='flag'>⚠ {html.escape(f)}</p>" for f in flags]
    parts.append(
        "<nav id='toc'><strong>Contents</strong><ol>" + "".join(f"<li><a href='#{sid}'>{html.escape(t)}</a></li>" for sid, t, _ in sections) + "</ol></nav>"
    )
    for sid, t, body in sections:
        parts.append(f"<section id='{sid}'><h2>{html.escape(t)}</h2>{body}</section>")
    parts.append("</body></html>")
    path = out_dir / "report.html"
    atomic_write_text(path, "\n".join(parts))
    for _, _, fd in figures:
        if isinstance(fd, FigureData):
            fd.figure.clear()  # free the figures' memory now; a long sweep page holds many
    return path
